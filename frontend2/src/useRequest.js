import { useCallback, useEffect, useRef, useState } from 'react'

const IDLE = { status: 'idle', data: null, error: null }

/**
 * Runs `load(signal)` when `run()` is called (or whenever `deps` change, with `auto`), keeping
 * only the answer of the latest call: an older request is aborted, so a slow answer for a
 * previous account never replaces the current one.
 */
export function useRequest(load, deps, { auto = true } = {}) {
  const [state, setState] = useState(IDLE)
  const controller = useRef(null)

  // `load` is a new closure every render; `deps` say when it actually changes.
  const loader = useCallback(load, deps)

  const run = useCallback(async () => {
    controller.current?.abort()
    const current = new AbortController()
    controller.current = current
    setState({ status: 'loading', data: null, error: null })
    try {
      const data = await loader(current.signal)
      if (!current.signal.aborted) setState({ status: 'done', data, error: null })
    } catch (error) {
      if (!current.signal.aborted) setState({ status: 'error', data: null, error })
    }
  }, [loader])

  const reset = useCallback(() => {
    controller.current?.abort()
    setState(IDLE)
  }, [])

  useEffect(() => {
    if (auto) run()
    else reset()
    return () => controller.current?.abort()
  }, [auto, run, reset])

  return { ...state, run, reset }
}
