import { formatMoney } from '../../format.js'

/**
 * The plan's tax estimate and cash movement (SPEC section 3's `tax`, `cash_before`, `cash_after`,
 * `withdrawal`, `trading_cost`). Cash after includes a withdrawal still to be paid out, so the
 * withdrawal is shown beside it with what stays invested as cash, as the CLI's "set aside" says.
 */
export default function TaxSummary({ plan }) {
  const { tax, currency } = plan
  const money = (amount, signed = false) => formatMoney(amount, currency, { signed })
  const withdrawal = plan.withdrawal ?? 0
  const tradingCost = plan.trading_cost ?? 0
  return (
    <dl className="tax-summary" aria-label="Tax and cash">
      <div>
        <dt>Estimated tax</dt>
        <dd className="tax-summary__tax">{money(tax.estimated_tax)}</dd>
      </div>
      <div>
        <dt>Short-term gain</dt>
        <dd>{money(tax.short_term_gain, true)}</dd>
      </div>
      <div>
        <dt>Long-term gain</dt>
        <dd>{money(tax.long_term_gain, true)}</dd>
      </div>
      {tax.net_loss_carried > 0 && (
        <div>
          <dt>Loss carried forward</dt>
          <dd>{money(tax.net_loss_carried)}</dd>
        </div>
      )}
      <div>
        <dt>Cash</dt>
        <dd>
          {money(plan.cash_before)} → {money(plan.cash_after)}
        </dd>
      </div>
      {withdrawal > 0 && (
        <div>
          <dt>Withdrawal set aside</dt>
          <dd>
            {money(withdrawal)} (cash left invested {money(plan.cash_after - withdrawal)})
          </dd>
        </div>
      )}
      {tradingCost > 0 && (
        <div>
          <dt>Trading cost</dt>
          <dd>{money(tradingCost)}</dd>
        </div>
      )}
    </dl>
  )
}
