import { describe, expect, it, vi } from 'vitest'
import { adoptTokenFromLocation, api, ApiError } from './api.js'

describe('api', () => {
  it('moves a token from the URL fragment to session storage and sends it', async () => {
    const replaceState = vi.fn()
    adoptTokenFromLocation({ hash: '#token=abc%2B123', pathname: '/', search: '' }, { replaceState })
    expect(replaceState).toHaveBeenCalledWith(null, '', '/') // gone from the address bar
    const fetch = vi.fn(async () => new Response('[]', { status: 200 }))
    vi.stubGlobal('fetch', fetch)
    await api.accounts()
    expect(fetch.mock.calls[0][1].headers.Authorization).toBe('Bearer abc+123')
  })

  it('leaves the address alone without a token', () => {
    const replaceState = vi.fn()
    adoptTokenFromLocation({ hash: '', pathname: '/', search: '' }, { replaceState })
    expect(replaceState).not.toHaveBeenCalled()
  })

  it('addresses accounts by an encoded key, never a raw path', async () => {
    const fetch = vi.fn(async () => new Response('{}', { status: 200 }))
    vi.stubGlobal('fetch', fetch)
    await api.drift('../secret id')
    expect(fetch.mock.calls[0][0]).toBe('/api/accounts/..%2Fsecret%20id/drift')
  })

  it('turns an error answer into an ApiError with message, path and file', async () => {
    const body = { error: { message: 'a.toml, prices.VTI: must be > 0', path: 'prices.VTI', file: 'a.toml' } }
    vi.stubGlobal('fetch', async () => new Response(JSON.stringify(body), { status: 422 }))
    const error = await api.drift('0').catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 422, message: body.error.message, path: 'prices.VTI', file: 'a.toml' })
  })

  it('explains a server that is gone or answers something else', async () => {
    vi.stubGlobal('fetch', async () => {
      throw new TypeError('Failed to fetch')
    })
    await expect(api.accounts()).rejects.toMatchObject({ status: 0, message: expect.stringMatching(/cannot reach/) })
    vi.stubGlobal('fetch', async () => new Response('<html>proxy error</html>', { status: 502 }))
    await expect(api.accounts()).rejects.toMatchObject({ status: 502, message: 'request failed (HTTP 502)' })
  })
})
