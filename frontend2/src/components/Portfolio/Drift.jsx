import { useId } from 'react'
import {
  Bar,
  BarChart,
  CartesianGrid,
  Cell,
  LabelList,
  Rectangle,
  ReferenceLine,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts'
import {
  cleanDrift,
  describeDrift,
  formatAxisPoints,
  formatMoney,
  formatPercent,
  formatPoints,
  STATUS_TEXT,
} from '../../format.js'
import DriftTooltip from './DriftTooltip.jsx'
import { axisLimit, DRIFT_COLORS, driftStyle } from './driftStyle.js'

const ROW_HEIGHT = 56
const BAR_SIZE = 24
const MARGIN = { top: 24, right: 72, bottom: 36, left: 8 }
const LABEL_WIDTH = 190
const MIN_BAR_PX = 3 // a tiny drift still shows a sliver on its side of the line
const LABEL_GAP = 6 // between a bar's end and its drift label
const LABEL_CHAR_PX = 7.5 // a generous width per character of a drift label ("-100.0 pts")
const NAME_CHARS = 22 // the longest class name the label column shows whole (190 px)

/**
 * Drift per asset class (and cash) as horizontal bars diverging from a zero line at the target:
 * overweight to the right in red, underweight to the left in green, paler within the band, the
 * band shaded behind. Each bar is labelled with its current %, target % and signed drift; the
 * tooltip adds the money amounts, and a table carries the same numbers for screen readers.
 *
 * @param {object} props
 * @param {Array<{name: string, current_weight: number, target_weight: number, drift: number,
 *   status: string, band: number, value: number}>} props.rows  drift rows, cash last
 * @param {number} props.total  the value the weights are measured on (for money amounts)
 * @param {string} [props.currency]
 * @param {string} [props.title]
 * @param {string} [props.weightLabel]  what the current weight is called: "now", or "after" for a plan
 * @param {number} [props.limit]  the axis runs from -limit to +limit points (default: fits the rows);
 *   pass one limit to charts that are compared side by side
 * @param {number} [props.width]  a fixed width in pixels; fills its container when omitted
 */
export default function Drift({
  rows,
  total,
  currency = 'USD',
  title = 'Drift from target',
  weightLabel = 'now',
  limit,
  width,
}) {
  const titleId = useId()
  const outOfBand = rows.filter((r) => r.status !== 'in_band').length
  const summary =
    rows.length === 0
      ? 'No asset classes to show.'
      : `${outOfBand} of ${rows.length} ${rows.length === 1 ? 'class is' : 'classes are'} outside the band.`
  return (
    <figure className="drift" aria-labelledby={titleId}>
      <figcaption id={titleId} className="drift__title">
        {title}
      </figcaption>
      <p className="drift__summary">{summary}</p>
      {rows.length > 0 && (
        <>
          <DriftChart
            rows={rows}
            total={total}
            currency={currency}
            title={title}
            weightLabel={weightLabel}
            limit={limit ?? axisLimit(rows)}
            width={width}
          />
          <DriftLegend />
          <DriftTable rows={rows} total={total} currency={currency} title={title} weightLabel={weightLabel} />
        </>
      )}
    </figure>
  )
}

function DriftChart({ rows, total, currency, title, weightLabel, limit, width }) {
  const data = rows.map((row) => ({
    name: row.name,
    drift: cleanDrift(row.drift) * 100,
    band: [-row.band * 100, row.band * 100],
    row,
  }))
  const height = rows.length * ROW_HEIGHT + MARGIN.top + MARGIN.bottom
  const byName = new Map(rows.map((r) => [r.name, r]))

  const chart = (
    <BarChart
      data={data}
      layout="vertical"
      width={width}
      height={height}
      margin={MARGIN}
      barSize={BAR_SIZE}
      barGap={-BAR_SIZE} // the drift bar sits on top of its band
      title={title}
      desc="Bars right of the target line are overweight, bars left of it underweight."
    >
      <CartesianGrid horizontal={false} strokeDasharray="3 3" />
      <XAxis
        type="number"
        domain={[-limit, limit]}
        ticks={[-limit, -limit / 2, 0, limit / 2, limit]}
        tickFormatter={formatAxisPoints}
        allowDataOverflow
        label={{ value: 'Drift from target (percentage points)', position: 'insideBottom', offset: -24 }}
      />
      <YAxis
        type="category"
        dataKey="name"
        width={LABEL_WIDTH}
        tickLine={false}
        tick={<ClassTick byName={byName} weightLabel={weightLabel} />}
        interval={0}
      />
      <Bar dataKey="band" fill={DRIFT_COLORS.band} isAnimationActive={false} tooltipType="none" />
      <ReferenceLine x={0} stroke={DRIFT_COLORS.zeroLine} strokeWidth={2} label={targetLabel} />
      <Bar
        dataKey="drift"
        name="Drift"
        isAnimationActive={false}
        minPointSize={(value) => (value === 0 || !Number.isFinite(value) ? 0 : MIN_BAR_PX)}
        shape={(props) => <DriftBar {...props} weightLabel={weightLabel} />}
      >
        {data.map((d) => (
          <Cell key={d.name} fill={driftStyle(d.row).fill} />
        ))}
        <LabelList dataKey="drift" content={(props) => <DriftValueLabel {...props} limit={limit} row={rows[props.index]} />} />
      </Bar>
      <Tooltip
        cursor={{ fill: 'rgba(0, 0, 0, 0.04)' }}
        content={<DriftTooltip total={total} currency={currency} weightLabel={weightLabel} />}
        isAnimationActive={false}
      />
    </BarChart>
  )
  if (width) return <div className="drift__chart" onKeyDownCapture={rowKeys}>{chart}</div>
  return (
    <div className="drift__chart" onKeyDownCapture={rowKeys}>
      <ResponsiveContainer width="100%" height={height} initialDimension={{ width: 640, height }}>
        {chart}
      </ResponsiveContainer>
    </div>
  )
}

/**
 * ArrowDown / ArrowUp move the keyboard tooltip to the next / previous class, as the rows are
 * stacked: recharts' keyboard layer only knows ArrowLeft / ArrowRight, which in this vertical
 * layout go down / up the list (ArrowDown and ArrowUp did nothing).
 */
function rowKeys(event) {
  const mapped = { ArrowDown: 'ArrowLeft', ArrowUp: 'ArrowRight' }[event.key]
  if (!mapped || event.target.getAttribute?.('role') !== 'application') return
  event.preventDefault()
  event.stopPropagation()
  event.target.dispatchEvent(new KeyboardEvent('keydown', { key: mapped, bubbles: true, cancelable: true }))
}

const targetLabel = { value: 'target', position: 'top', fill: DRIFT_COLORS.zeroLine, fontSize: 12 }

/** One drift bar; the data attributes say what the colour says, for tests and tooling. */
function DriftBar({ weightLabel, ...props }) {
  const { row } = props.payload
  const style = driftStyle(row)
  if (!props.width) return null
  return (
    <Rectangle
      {...props}
      className="drift-bar"
      data-name={row.name}
      data-status={row.status}
      data-direction={style.direction}
      data-tone={style.tone}
      aria-label={`${row.name}: ${formatPercent(row.current_weight)} ${weightLabel}, target ${formatPercent(
        row.target_weight,
      )}, ${describeDrift(row.drift)}, ${STATUS_TEXT[row.status] ?? row.status}`}
      role="img"
    />
  )
}

/**
 * The signed drift just past the end of its bar, outside it; inside the bar, at its end, when the
 * space left between the end and the edge of the chart cannot hold it (an underweight bar near
 * the axis limit put its label over the class names). ``limit`` is the axis limit in points.
 */
function DriftValueLabel({ x, y, width, height, value, limit, row }) {
  if (value == null || !Number.isFinite(value)) return null
  const text = formatPoints(value / 100)
  const end = x + width
  const right = value >= 0
  const half = value === 0 ? Infinity : (Math.abs(width) * limit) / Math.abs(value) // zero line to plot edge, px
  const room = half - Math.abs(width) + (right ? MARGIN.right : MARGIN.left)
  const inside = room < text.length * LABEL_CHAR_PX + LABEL_GAP && Math.abs(width) >= text.length * LABEL_CHAR_PX + 2 * LABEL_GAP
  const outward = right !== inside // which way from the bar's end the text runs
  return (
    <text
      className={inside ? `drift-value drift-value--inside-${row && driftStyle(row).tone === 'pale' ? 'pale' : 'strong'}` : 'drift-value'}
      x={outward ? end + LABEL_GAP : end - LABEL_GAP}
      y={y + height / 2}
      dominantBaseline="central"
      textAnchor={outward ? 'start' : 'end'}
    >
      {text}
    </text>
  )
}

/** The class name, with its current and target weight under it. */
function ClassTick({ x, y, payload, byName, weightLabel }) {
  const row = byName.get(payload.value)
  if (!row) return null
  return (
    <text x={x - 8} y={y} textAnchor="end" className="drift-tick" data-name={row.name}>
      {row.name.length > NAME_CHARS && <title>{row.name}</title>}
      <tspan x={x - 8} dy="-0.3em" className="drift-tick__name">
        {row.name.length > NAME_CHARS ? `${row.name.slice(0, NAME_CHARS - 1)}…` : row.name}
      </tspan>
      <tspan x={x - 8} dy="1.3em" className="drift-tick__weights">
        {formatPercent(row.current_weight)} {weightLabel} · {formatPercent(row.target_weight)} target
      </tspan>
    </text>
  )
}

function DriftLegend() {
  const items = [
    [DRIFT_COLORS.over, 'Overweight (right, beyond band)'],
    [DRIFT_COLORS.overInBand, 'Over, within band'],
    [DRIFT_COLORS.under, 'Underweight (left, beyond band)'],
    [DRIFT_COLORS.underInBand, 'Under, within band'],
    [DRIFT_COLORS.band, 'Tolerance band'],
  ]
  return (
    <ul className="drift__legend" aria-label="Legend">
      {items.map(([color, text]) => (
        <li key={text}>
          <span className="drift__swatch" style={{ background: color }} aria-hidden="true" />
          {text}
        </li>
      ))}
    </ul>
  )
}

/** The chart's numbers as a table, for screen readers. */
function DriftTable({ rows, total, currency, title, weightLabel }) {
  // A table box ignores width and overflow, so a wrapper is what hides it.
  return (
    <div className="sr-only">
      <table>
        <caption>{title}: weights, drift and band per class</caption>
        <thead>
          <tr>
            <th scope="col">Class</th>
            <th scope="col">Weight {weightLabel}</th>
            <th scope="col">Target</th>
            <th scope="col">Drift</th>
            <th scope="col">Band</th>
            <th scope="col">Status</th>
            <th scope="col">Value</th>
            <th scope="col">Difference from target</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.name}>
              <th scope="row">{row.name}</th>
              <td>{formatPercent(row.current_weight)}</td>
              <td>{formatPercent(row.target_weight)}</td>
              <td>{formatPoints(row.drift)}</td>
              <td>±{formatPoints(row.band).replace(/^\+/, '')}</td>
              <td>{STATUS_TEXT[row.status] ?? row.status}</td>
              <td>{formatMoney(row.value, currency)}</td>
              <td>{formatMoney(row.value - row.target_weight * total, currency, { signed: true })}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
}
