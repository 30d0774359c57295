import { render, screen, within } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import plan from '../../test/fixtures/household-plan.json'
import OrdersTable from './OrdersTable.jsx'

describe('OrdersTable', () => {
  it('lists each order with side in words, money to the cent and the lots a sell relieves', () => {
    render(<OrdersTable orders={plan.orders} currency="USD" />)
    const rows = within(screen.getByRole('table', { name: 'Proposed orders' })).getAllByRole('row').slice(1)
    expect(rows).toHaveLength(plan.orders.length)
    const cells = (r) => [...r.children].map((c) => c.textContent)
    expect(cells(rows[0])).toEqual([
      'Sell', 'VTI', '145', '$298.40', '$43,268.00',
      'VTI-2026: 45 sh, short-term gain -$324.00; VTI-2022: 100 sh, long-term gain +$6,735.00',
    ])
    expect(cells(rows.at(-1))).toEqual(['Buy', 'VNQ', '104', '$88.75', '$9,230.00', '—'])
  })

  it('says when there is nothing to trade, in the CLI words', () => {
    render(<OrdersTable orders={[]} currency="USD" />)
    expect(screen.getByText('No trades: the account stays as it is.')).toBeInTheDocument()
    expect(screen.queryByRole('table')).toBeNull()
  })

  it('does not call a plan of no trades that leaves classes out of band "needed"', () => {
    render(<OrdersTable orders={[]} currency="USD" outOfBand={2} />)
    expect(
      screen.getByText(
        'No trades: the account stays as it is. 2 classes stay outside the band (see the notes and the drift after).',
      ),
    ).toBeInTheDocument()
    expect(screen.queryByText(/needed/)).toBeNull()
  })
})
