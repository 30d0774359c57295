import { formatMoney, formatPercent, formatPoints, STATUS_TEXT } from '../../format.js'

/**
 * Recharts tooltip content for a drift bar: the class's money now, at target and the
 * difference, so the user sees what the drift is worth.
 */
export default function DriftTooltip({ active, payload, total, currency, weightLabel = 'now' }) {
  const datum = active && payload?.length ? payload[0].payload : null
  if (!datum) return null
  const { row } = datum
  const targetAmount = row.target_weight * total
  return (
    <div className="drift-tooltip" role="status">
      <p className="drift-tooltip__title">
        {row.name} <span className="drift-tooltip__status">({STATUS_TEXT[row.status] ?? row.status})</span>
      </p>
      <dl>
        <dt>{weightLabel[0].toUpperCase() + weightLabel.slice(1)}</dt>
        <dd>
          {formatMoney(row.value, currency)} ({formatPercent(row.current_weight)})
        </dd>
        <dt>Target</dt>
        <dd>
          {formatMoney(targetAmount, currency)} ({formatPercent(row.target_weight)})
        </dd>
        <dt>Difference</dt>
        <dd>
          {formatMoney(row.value - targetAmount, currency, { signed: true })} ({formatPoints(row.drift)})
        </dd>
        <dt>Band</dt>
        <dd>±{formatPoints(row.band, { unit: false }).replace(/^\+/, '')} pts</dd>
      </dl>
    </div>
  )
}
