import { render, screen, within } from '@testing-library/react'
import userEvent from '@testing-library/user-event'
import { describe, expect, it } from 'vitest'
import household from '../../test/fixtures/household-drift.json'
import Drift from './Drift.jsx'
import DriftTooltip from './DriftTooltip.jsx'

const usStock = household.classes[0]

describe('DriftTooltip', () => {
  it('shows the money now, at target and the difference', () => {
    render(<DriftTooltip active payload={[{ payload: { row: usStock } }]} total={household.value} currency="USD" />)
    const tip = screen.getByRole('status')
    expect(tip).toHaveTextContent('US_STOCK (overweight)')
    expect(tip).toHaveTextContent('Now$171,557.50 (58.3%)')
    expect(tip).toHaveTextContent('Target$117,635.40 (40.0%)')
    expect(tip).toHaveTextContent('Difference+$53,922.10 (+18.3 pts)')
    expect(tip).toHaveTextContent('Band±5.0 pts')
  })

  it('renders nothing while inactive', () => {
    const { container } = render(<DriftTooltip active={false} payload={[]} total={1} />)
    expect(container).toBeEmptyDOMElement()
  })

  it('is reachable from the keyboard on the chart', async () => {
    const user = userEvent.setup()
    render(<Drift rows={household.classes} total={household.value} width={900} title="Drift now" />)
    await user.tab()
    const chart = screen.getByRole('application')
    expect(chart).toHaveFocus()
    await user.keyboard('{ArrowRight}')
    const tip = await screen.findByRole('status')
    expect(within(tip).getByText(/^INTL_STOCK|^US_STOCK/)).toBeInTheDocument()
    expect(tip).toHaveTextContent(/Difference[+-]\$[\d,]+\.\d\d/)
  })

  it('moves down and up the classes with ArrowDown and ArrowUp, as they are stacked', async () => {
    // recharts' keyboard layer knows only ArrowLeft / ArrowRight (down / up in this layout)
    const user = userEvent.setup()
    render(<Drift rows={household.classes} total={household.value} width={900} title="Drift now" />)
    await user.tab()
    const shown = async () => (await screen.findByRole('status')).textContent.split(' (')[0]
    await user.keyboard('{ArrowDown}')
    expect(await shown()).toBe('INTL_STOCK')
    await user.keyboard('{ArrowDown}')
    expect(await shown()).toBe('EM_STOCK')
    await user.keyboard('{ArrowUp}')
    expect(await shown()).toBe('INTL_STOCK')
  })
})
