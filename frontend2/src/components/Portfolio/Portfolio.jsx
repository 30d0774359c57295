import { api } from '../../api.js'
import { formatMoney } from '../../format.js'
import { useRequest } from '../../useRequest.js'
import ErrorMessage from '../ErrorMessage.jsx'
import Drift from './Drift.jsx'
import { axisLimit } from './driftStyle.js'
import PlanPanel from './PlanPanel.jsx'

/**
 * One account: its drift now, and the plan panel beside it. Once a plan is shown, the drift now
 * and the drift after the plan are drawn on one scale (the larger of the two), so the bars
 * compare at a glance; before that the drift now fits its own rows.
 */
export default function Portfolio({ accountKey }) {
  const drift = useRequest((signal) => api.drift(accountKey, { signal }), [accountKey])
  const plan = useRequest((signal) => api.plan(accountKey, { signal }), [accountKey], { auto: false })
  const report = drift.data
  const limit = plan.data ? sharedLimit(report, plan.data) : undefined
  return (
    <div className="portfolio">
      <section className="panel" aria-labelledby="drift-heading" aria-busy={drift.status === 'loading'}>
        <div className="panel__header">
          <h2 id="drift-heading">Allocation drift</h2>
          <button type="button" className="button button--quiet" onClick={drift.run}>
            Reload
          </button>
        </div>
        {drift.status === 'loading' && <p role="status">Loading…</p>}
        <ErrorMessage error={drift.error} title="Cannot read this account" />
        {report && (
          <>
            <p className="portfolio__facts">
              <strong>{report.account}</strong> · value {formatMoney(report.value, report.currency)} · as of{' '}
              {report.as_of} · {report.in_band ? 'every class within its band' : 'rebalance suggested'}
            </p>
            <Drift rows={report.classes} total={report.value} currency={report.currency} title="Drift now" limit={limit} />
          </>
        )}
      </section>
      <PlanPanel plan={plan} limit={limit} />
    </div>
  )
}

/** One axis limit for the drift now, the plan's drift before and its drift after. */
export function sharedLimit(report, plan) {
  const before = plan.drift_after_rows.map((row) => ({ ...row, drift: plan.drift_before[row.name] ?? 0 }))
  return axisLimit([...(report?.classes ?? []), ...before, ...plan.drift_after_rows])
}
