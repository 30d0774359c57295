// The JSON API of rebalance_opt/server.py. Every error answer is {"error": {message, path, file}}.

const TOKEN_KEY = 'rebalance-opt.token'

/** An error answer from the API (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, { message, path = null, file = null } = {}) {
    super(message || `request failed (HTTP ${status})`)
    this.name = 'ApiError'
    this.status = status
    this.path = path
    this.file = file
  }
}

/**
 * Moves a token given in the URL fragment (#token=...) into session storage and out of the
 * address bar. Fragments never reach the server, so the token does not end up in any log.
 */
export function adoptTokenFromLocation(location = window.location, history = window.history) {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''))
  const token = params.get('token')
  if (!token) return
  setToken(token)
  history.replaceState(null, '', location.pathname + location.search)
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token)
  else sessionStorage.removeItem(TOKEN_KEY)
}

async function request(method, url, { body, signal } = {}) {
  const headers = { Accept: 'application/json' }
  const token = sessionStorage.getItem(TOKEN_KEY)
  if (token) headers.Authorization = `Bearer ${token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    })
  } catch (err) {
    if (err.name === 'AbortError') throw err
    throw new ApiError(0, { message: 'cannot reach the rebalance-opt server; is it still running?' })
  }
  let payload = null
  try {
    payload = await response.json()
  } catch {
    // not JSON: handled below
  }
  if (!response.ok) throw new ApiError(response.status, payload?.error ?? {})
  if (payload === null) throw new ApiError(response.status, { message: 'the server sent an unreadable answer' })
  return payload
}

const accountUrl = (key) => `/api/accounts/${encodeURIComponent(key)}`

export const api = {
  accounts: (options) => request('GET', '/api/accounts', options),
  drift: (key, options) => request('GET', `${accountUrl(key)}/drift`, options),
  plan: (key, options) => request('POST', `${accountUrl(key)}/plan`, { body: {}, ...options }),
}
