import { useEffect, useState } from 'react'
import { api, setToken } from './api.js'
import ErrorBoundary from './components/ErrorBoundary.jsx'
import ErrorMessage from './components/ErrorMessage.jsx'
import AccountPicker from './components/Portfolio/AccountPicker.jsx'
import Portfolio from './components/Portfolio/Portfolio.jsx'
import TokenForm from './components/TokenForm.jsx'
import { useRequest } from './useRequest.js'

export default function App() {
  const [attempt, setAttempt] = useState(0)
  const accounts = useRequest((signal) => api.accounts({ signal }), [attempt])
  const [selected, setSelected] = useState(null)
  const list = accounts.data ?? []

  useEffect(() => {
    if (list.length && !list.some((a) => a.key === selected)) setSelected(list[0].key)
  }, [list, selected])

  return (
    <div className="app">
      <header className="app__header">
        <h1>
          rebalance-opt <span className="app__subtitle">drift visualizer</span>
        </h1>
        {list.length > 0 && <AccountPicker accounts={list} value={selected} onChange={setSelected} />}
      </header>
      <main>
        {accounts.status === 'loading' && <p role="status">Loading accounts…</p>}
        {accounts.error?.status === 401 ? (
          <TokenForm
            onSubmit={(token) => {
              setToken(token)
              setAttempt((n) => n + 1)
            }}
          />
        ) : (
          <ErrorMessage error={accounts.error} title="Cannot list the accounts" />
        )}
        {accounts.status === 'done' && list.length === 0 && (
          <p>No account files were given. Start the server with one: python cli.py serve ACCOUNT.toml</p>
        )}
        {selected !== null && list.some((a) => a.key === selected) && (
          <ErrorBoundary key={selected} title="This account could not be shown">
            <Portfolio accountKey={selected} />
          </ErrorBoundary>
        )}
      </main>
    </div>
  )
}
