import { render, screen, within } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import household from '../../test/fixtures/household-drift.json'
import { row } from '../../test/rows.js'
import Drift from './Drift.jsx'
import { DRIFT_COLORS } from './driftStyle.js'

const WIDTH = 900

function renderDrift(rows, props = {}) {
  const utils = render(<Drift rows={rows} total={100000} width={WIDTH} title="Drift now" {...props} />)
  return { ...utils, geometry: chartGeometry(utils.container) }
}

/** Where the bars, the band shading and the zero line were drawn, read back from the SVG. */
function chartGeometry(container) {
  const zero = container.querySelector('.recharts-reference-line-line')
  const rect = (el) => ({
    x: Number(el.getAttribute('x')),
    y: Number(el.getAttribute('y')),
    width: Number(el.getAttribute('width')),
    fill: el.getAttribute('fill'),
  })
  const bars = [...container.querySelectorAll('path.drift-bar')].map((el) => ({
    ...rect(el),
    name: el.dataset.name,
    status: el.dataset.status,
    direction: el.dataset.direction,
    label: el.getAttribute('aria-label'),
  }))
  const bands = [...container.querySelectorAll('path.recharts-rectangle:not(.drift-bar)')].map(rect)
  const clip = container.querySelector('defs clipPath rect')
  return {
    zeroX: zero ? Number(zero.getAttribute('x1')) : null,
    plot: clip && { left: Number(clip.getAttribute('x')), right: Number(clip.getAttribute('x')) + Number(clip.getAttribute('width')) },
    bars,
    bar: (name) => bars.find((b) => b.name === name),
    bands,
    values: [...container.querySelectorAll('text.drift-value')].map((t) => t.textContent),
    labels: [...container.querySelectorAll('text.drift-value')].map((t) => ({
      text: t.textContent,
      x: Number(t.getAttribute('x')),
      anchor: t.getAttribute('text-anchor'),
      inside: t.getAttribute('class').includes('drift-value--inside'),
    })),
  }
}

describe('Drift', () => {
  it('draws an overweight class to the right of the target line in red', () => {
    const { geometry } = renderDrift([row('US_STOCK', 0.6, 0.4), row('CASH', 0.4, 0.6, { band: 0.5 })])
    const bar = geometry.bar('US_STOCK')
    expect(bar.fill).toBe(DRIFT_COLORS.over)
    expect(bar.status).toBe('overweight')
    expect(bar.direction).toBe('right')
    expect(bar.x).toBeCloseTo(geometry.zeroX)
    expect(bar.width).toBeGreaterThan(0)
  })

  it('draws an underweight class to the left of the target line in green', () => {
    const { geometry } = renderDrift([row('US_BOND', 0.1, 0.3), row('CASH', 0.9, 0.7, { band: 0.5 })])
    const bar = geometry.bar('US_BOND')
    expect(bar.fill).toBe(DRIFT_COLORS.under)
    expect(bar.direction).toBe('left')
    expect(bar.x).toBeCloseTo(geometry.zeroX) // starts at the line ...
    expect(bar.width).toBeLessThan(0) // ... and extends left of it
  })

  it('uses a paler tint of the same hue for drifts within the band', () => {
    const { geometry } = renderDrift([row('OVER', 0.53, 0.5), row('UNDER', 0.45, 0.48), row('CASH', 0.02, 0.02)])
    expect(geometry.bar('OVER')).toMatchObject({ fill: DRIFT_COLORS.overInBand, status: 'in_band', direction: 'right' })
    expect(geometry.bar('UNDER')).toMatchObject({ fill: DRIFT_COLORS.underInBand, status: 'in_band', direction: 'left' })
    expect(geometry.bar('OVER').width).toBeGreaterThan(0)
    expect(geometry.bar('UNDER').width).toBeLessThan(0)
  })

  it('draws the bar length in proportion to the drift', () => {
    const { geometry } = renderDrift([row('A', 0.5, 0.4), row('B', 0.3, 0.4), row('CASH', 0.2, 0.2)])
    expect(geometry.bar('A').width).toBeCloseTo(-geometry.bar('B').width, 5)
  })

  it('shades each class’s own tolerance band around the target line', () => {
    const { geometry } = renderDrift([
      row('US_STOCK', 0.5, 0.5, { band: 0.05 }),
      row('US_BOND', 0.3, 0.3, { band: 0.02 }),
      row('CASH', 0.2, 0.2, { band: 0.05 }),
    ])
    const [wide, narrow] = geometry.bands
    expect(geometry.bands).toHaveLength(3)
    expect(wide.fill).toBe(DRIFT_COLORS.band)
    expect(wide.x + wide.width / 2).toBeCloseTo(geometry.zeroX) // centred on the target
    expect(narrow.width / wide.width).toBeCloseTo(0.4) // 2 points against 5
  })

  it('keeps the engine’s order, cash last, top to bottom', () => {
    const { geometry } = renderDrift(household.classes, { total: household.value })
    const names = household.classes.map((r) => r.name)
    const drawn = [...geometry.bars].sort((a, b) => a.y - b.y).map((b) => b.name)
    expect(drawn).toEqual(names)
    expect(drawn.at(-1)).toBe('CASH')
  })

  it('labels each bar with current %, target % and the signed drift in points', () => {
    const { container, geometry } = renderDrift(household.classes, { total: household.value })
    const tick = (name) => container.querySelector(`text.drift-tick[data-name="${name}"]`).textContent
    expect(tick('US_STOCK')).toBe('US_STOCK58.3% now · 40.0% target')
    expect(tick('US_BOND')).toBe('US_BOND14.8% now · 25.0% target')
    expect(geometry.values).toEqual(['+18.3 pts', '-2.6 pts', '-3.2 pts', '-10.2 pts', '-2.4 pts', '-3.2 pts', '+3.3 pts'])
  })

  it('can share its axis with another chart', () => {
    const { container } = renderDrift([row('A', 0.41, 0.4), row('CASH', 0.59, 0.6)], { limit: 25 })
    const ticks = [...container.querySelectorAll('.recharts-xAxis-tick-labels text')].map((t) => t.textContent)
    expect(ticks).toEqual(['-25', '-12.5', '0', '+12.5', '+25'])
  })

  it('names the weight after a plan as such', () => {
    const { container } = renderDrift([row('US_STOCK', 0.402, 0.4), row('CASH', 0.598, 0.6)], { weightLabel: 'after' })
    expect(container.querySelector('text.drift-tick').textContent).toBe('US_STOCK40.2% after · 40.0% target')
    expect(screen.getByRole('img', { name: /^US_STOCK: 40\.2% after, target 40\.0%, 0\.2 points over target, within band$/ })).toBeInTheDocument()
  })

  it('colours the example household by status and side', () => {
    const { geometry } = renderDrift(household.classes, { total: household.value })
    const fills = Object.fromEntries(geometry.bars.map((b) => [b.name, b.fill]))
    expect(fills).toEqual({
      US_STOCK: DRIFT_COLORS.over,
      INTL_STOCK: DRIFT_COLORS.underInBand,
      EM_STOCK: DRIFT_COLORS.underInBand,
      US_BOND: DRIFT_COLORS.under,
      TIPS: DRIFT_COLORS.underInBand,
      REIT: DRIFT_COLORS.underInBand,
      CASH: DRIFT_COLORS.overInBand,
    })
  })

  it('says what colour says in text: bar labels, a data table and a legend', () => {
    renderDrift(household.classes, { total: household.value })
    const figure = screen.getByRole('figure', { name: 'Drift now' })
    expect(within(figure).getByText('2 of 7 classes are outside the band.')).toBeInTheDocument()
    expect(within(figure).getByRole('img', { name: /^US_STOCK: 58\.3% now, target 40\.0%, 18\.3 points over target, overweight$/ })).toBeInTheDocument()
    expect(within(figure).getByRole('img', { name: /^US_BOND: .* 10\.2 points under target, underweight$/ })).toBeInTheDocument()
    const table = within(figure).getByRole('table', { name: /Drift now/ })
    const bondRow = within(table).getByRole('row', { name: /US_BOND/ })
    expect(within(bondRow).getAllByRole('cell').map((c) => c.textContent)).toEqual([
      '14.8%', '25.0%', '-10.2 pts', '±3.0 pts', 'underweight', '$43,410.00', '-$30,112.13',
    ])
    expect(within(figure).getByRole('list', { name: 'Legend' })).toHaveTextContent('Overweight (right, beyond band)')
  })

  it('renders an empty account as a message, not an empty chart', () => {
    const { container } = renderDrift([])
    expect(screen.getByRole('figure', { name: 'Drift now' })).toHaveTextContent('No asset classes to show.')
    expect(container.querySelector('svg')).toBeNull()
    expect(screen.queryByRole('table')).toBeNull()
  })

  it('renders a single-class account', () => {
    const { geometry } = renderDrift([row('CASH', 1, 0.9)])
    expect(screen.getByText('1 of 1 class is outside the band.')).toBeInTheDocument()
    expect(geometry.bars).toHaveLength(1)
    expect(geometry.bar('CASH')).toMatchObject({ fill: DRIFT_COLORS.over, direction: 'right' })
    expect(geometry.values).toEqual(['+10.0 pts'])
  })

  it('keeps huge drifts (the whole account in one class) inside the plot', () => {
    const { geometry } = renderDrift([row('ALL_IN', 1, 0), row('CASH', 0, 1)])
    const over = geometry.bar('ALL_IN')
    const under = geometry.bar('CASH')
    expect(over.x + over.width).toBeLessThanOrEqual(geometry.plot.right)
    expect(under.x + under.width).toBeGreaterThanOrEqual(geometry.plot.left)
    expect(over.width).toBeGreaterThan((geometry.plot.right - geometry.zeroX) * 0.8)
    expect(geometry.values).toEqual(['+100.0 pts', '-100.0 pts'])
  })

  it('still shows tiny drifts on their side of the line, with their sign', () => {
    const { geometry } = renderDrift([
      row('TINY_OVER', 0.300001, 0.3),
      row('TINY_UNDER', 0.2996, 0.3),
      row('EXACT', 0.2, 0.2),
      row('CASH', 0.199999, 0.2),
    ])
    expect(geometry.bar('TINY_OVER')).toMatchObject({ direction: 'right', fill: DRIFT_COLORS.overInBand })
    expect(geometry.bar('TINY_OVER').width).toBeGreaterThanOrEqual(3)
    expect(geometry.bar('TINY_UNDER').width).toBeLessThanOrEqual(-3)
    expect(geometry.bar('EXACT')).toBeUndefined() // nothing to draw on target
    expect(geometry.values).toEqual(['+<0.01 pts', '-0.04 pts', '0.0 pts', '-<0.01 pts'])
  })

  it('puts a long underweight bar’s label inside the bar, not over the class names', () => {
    // -50 points is the largest drift: the axis leaves 10% past it, less than the label needs.
    const { geometry } = renderDrift([row('A', 0.5, 0.0), row('B', 0.0, 0.5), row('CASH', 0.5, 0.5)])
    const under = geometry.labels.find((l) => l.text === '-50.0 pts')
    const bar = geometry.bar('B')
    expect(under.inside).toBe(true)
    expect(under.x).toBeGreaterThan(geometry.plot.left) // right of the plot's left edge, where names end
    expect(under.x).toBeGreaterThan(bar.x + bar.width) // from the bar's end, running towards the line
    expect(under.anchor).toBe('start')
    const over = geometry.labels.find((l) => l.text === '+50.0 pts')
    expect(over.inside).toBe(false) // the right margin holds it
    expect(geometry.labels.find((l) => l.text === '0.0 pts').inside).toBe(false)
  })

  it('keeps a short bar’s label outside it, past its end', () => {
    const { geometry } = renderDrift([row('A', 0.45, 0.5), row('B', 0.8, 0.5), row('CASH', 0.05, 0.0)])
    const label = geometry.labels.find((l) => l.text === '-5.0 pts')
    const bar = geometry.bar('A')
    expect(label.inside).toBe(false)
    expect(label.x).toBeLessThan(bar.x + bar.width)
    expect(label.anchor).toBe('end')
  })

  it('shortens a class name too long for the label column, with the whole name as its title', () => {
    const name = 'VERY_LONG_ASSET_CLASS_NAME_NUMBER_10'
    const { container } = renderDrift([row(name, 0.5, 0.5), row('CASH', 0.5, 0.5)])
    const tick = container.querySelector(`text.drift-tick[data-name="${name}"]`)
    expect(tick.querySelector('.drift-tick__name').textContent).toBe('VERY_LONG_ASSET_CLASS…')
    expect(tick.querySelector('title').textContent).toBe(name)
    expect(container.querySelector('text.drift-tick[data-name="CASH"] title')).toBeNull()
  })

  it('draws float noise in a drift as on target, as the CLI prints it', () => {
    const cash = { ...row('CASH', 0.1, 0.1), drift: -8.326672684688674e-17 }
    const { geometry } = renderDrift([row('A', 0.9, 0.9), cash])
    expect(geometry.bar('CASH')).toBeUndefined()
    expect(geometry.values).toEqual(['0.0 pts', '0.0 pts'])
    const cashRow = within(screen.getByRole('table')).getByRole('row', { name: /CASH/ })
    expect(within(cashRow).getAllByRole('cell')[2]).toHaveTextContent(/^0\.0 pts$/)
  })

  it('draws a row whose drift is missing as on target instead of failing', () => {
    const broken = { ...row('A', 0.5, 0.5), drift: undefined }
    const { geometry } = renderDrift([broken, row('CASH', 0.5, 0.5)])
    expect(geometry.bar('A')).toBeUndefined()
  })
})
