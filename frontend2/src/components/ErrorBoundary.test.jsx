import { render, screen } from '@testing-library/react'
import userEvent from '@testing-library/user-event'
import { describe, expect, it, vi } from 'vitest'
import ErrorBoundary from './ErrorBoundary.jsx'

describe('ErrorBoundary', () => {
  it('shows a render error of its part of the page instead of blanking the page, and can try again', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {}) // React logs the caught error
    let broken = true
    function Part() {
      if (broken) throw new Error('Invariant failed: a bad row')
      return <p>drawn</p>
    }
    render(
      <div>
        <h1>still here</h1>
        <ErrorBoundary title="This account could not be shown">
          <Part />
        </ErrorBoundary>
      </div>,
    )
    const alert = screen.getByRole('alert')
    expect(alert).toHaveTextContent('This account could not be shown')
    expect(alert).toHaveTextContent('Invariant failed: a bad row')
    expect(screen.getByRole('heading', { name: 'still here' })).toBeInTheDocument()
    broken = false
    await userEvent.setup().click(screen.getByRole('button', { name: 'Try again' }))
    expect(screen.getByText('drawn')).toBeInTheDocument()
    vi.restoreAllMocks()
  })
})
