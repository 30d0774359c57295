import ErrorMessage from '../ErrorMessage.jsx'
import Drift from './Drift.jsx'
import OrdersTable from './OrdersTable.jsx'
import TaxSummary from './TaxSummary.jsx'

/**
 * "Generate plan": the proposed orders, the tax they cost and the drift they leave. ``plan`` is
 * the request (``useRequest``) its parent owns, so the parent can draw the drift now on the
 * same scale (``limit``, ``sharedLimit``) as the drift after; without one the drift after fits
 * its own rows.
 */
export default function PlanPanel({ plan, limit }) {
  const busy = plan.status === 'loading'
  return (
    <section className="panel plan" aria-labelledby="plan-heading" aria-busy={busy}>
      <div className="panel__header">
        <h2 id="plan-heading">Rebalance plan</h2>
        <button type="button" className="button" onClick={plan.run} disabled={busy}>
          {busy ? 'Generating…' : plan.data ? 'Generate again' : 'Generate plan'}
        </button>
      </div>
      {plan.status === 'idle' && (
        <p className="muted">Generate a plan to see the orders, their estimated tax and the drift after trading.</p>
      )}
      {busy && <p role="status">Solving…</p>}
      <ErrorMessage error={plan.error} title="No plan" />
      {plan.data && <PlanResult plan={plan.data} limit={limit} />}
    </section>
  )
}

function PlanResult({ plan, limit }) {
  const outOfBand = plan.drift_after_rows.filter((row) => row.status !== 'in_band').length
  return (
    <div className="plan__result" role="region" aria-label="Plan result">
      <p className="plan__meta">
        {plan.orders.length} {plan.orders.length === 1 ? 'order' : 'orders'} · reason: {plan.reason} · solver status:{' '}
        {plan.status}
      </p>
      <OrdersTable orders={plan.orders} currency={plan.currency} outOfBand={outOfBand} />
      <TaxSummary plan={plan} />
      {plan.notes?.length > 0 && (
        <ul className="plan__notes" aria-label="Notes">
          {plan.notes.map((note) => (
            <li key={note}>{note}</li>
          ))}
        </ul>
      )}
      <Drift
        rows={plan.drift_after_rows}
        total={plan.value_after}
        currency={plan.currency}
        title="Drift after the plan"
        weightLabel="after"
        limit={limit}
      />
    </div>
  )
}
