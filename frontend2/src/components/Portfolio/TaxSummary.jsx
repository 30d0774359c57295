import { formatMoney } from '../../format.js'

/** The plan's tax estimate and cash movement (SPEC section 3's `tax`, `cash_before`, `cash_after`). */
export default function TaxSummary({ plan }) {
  const { tax, currency } = plan
  const money = (amount, signed = false) => formatMoney(amount, currency, { signed })
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
    </dl>
  )
}
