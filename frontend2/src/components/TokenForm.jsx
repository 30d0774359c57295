import { useId, useState } from 'react'

/** Asks for the server's access token after a 401 (the server was started with --token). */
export default function TokenForm({ onSubmit }) {
  const [token, setToken] = useState('')
  const id = useId()
  return (
    <form
      className="token-form"
      onSubmit={(event) => {
        event.preventDefault()
        if (token.trim()) onSubmit(token.trim())
      }}
    >
      <p>This server needs an access token.</p>
      <label htmlFor={id}>Access token</label>
      <input id={id} type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} />
      <button type="submit">Connect</button>
    </form>
  )
}
