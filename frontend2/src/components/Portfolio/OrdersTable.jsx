import { formatMoney, formatPrice, formatQuantity } from '../../format.js'

function lotsText(order, currency) {
  if (!order.lots?.length) return '—'
  return order.lots
    .map(
      (lot) =>
        `${lot.lot}: ${formatQuantity(lot.quantity)} sh, ${lot.term}-term gain ${formatMoney(lot.gain, currency, {
          signed: true,
        })}`,
    )
    .join('; ')
}

/**
 * The plan's orders, sells first as the engine lists them. With none, says so in the CLI's words,
 * and how many classes stay outside their band (``outOfBand``): "No trades needed." was shown for
 * an account whose holdings were all in no_sell, two classes 100 points off target.
 */
export default function OrdersTable({ orders, currency, outOfBand = 0 }) {
  if (!orders.length) {
    return (
      <p className="plan__empty">
        No trades: the account stays as it is.
        {outOfBand > 0 &&
          ` ${outOfBand} ${outOfBand === 1 ? 'class stays' : 'classes stay'} outside the band (see the notes and the drift after).`}
      </p>
    )
  }
  return (
    <table className="orders">
      <caption>Proposed orders</caption>
      <thead>
        <tr>
          <th scope="col">Side</th>
          <th scope="col">Symbol</th>
          <th scope="col" className="num">
            Quantity
          </th>
          <th scope="col" className="num">
            Price
          </th>
          <th scope="col" className="num">
            Amount
          </th>
          <th scope="col">Lots sold</th>
        </tr>
      </thead>
      <tbody>
        {orders.map((order) => (
          <tr key={`${order.side}-${order.symbol}`} data-side={order.side}>
            <td>
              <span className={`side side--${order.side}`}>{order.side === 'buy' ? 'Buy' : 'Sell'}</span>
            </td>
            <th scope="row">{order.symbol}</th>
            <td className="num">{formatQuantity(order.quantity)}</td>
            <td className="num">{formatPrice(order.price, currency)}</td>
            <td className="num">{formatMoney(order.notional, currency)}</td>
            <td className="orders__lots">{lotsText(order, currency)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}
