import { api } from '../../api.js'
import { formatMoney } from '../../format.js'
import { useRequest } from '../../useRequest.js'
import ErrorMessage from '../ErrorMessage.jsx'
import Drift from './Drift.jsx'
import PlanPanel from './PlanPanel.jsx'

/** One account: its drift now, and the plan panel beside it. */
export default function Portfolio({ accountKey }) {
  const drift = useRequest((signal) => api.drift(accountKey, { signal }), [accountKey])
  const report = drift.data
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
            <Drift rows={report.classes} total={report.value} currency={report.currency} title="Drift now" />
          </>
        )}
      </section>
      <PlanPanel accountKey={accountKey} />
    </div>
  )
}
