import { Component } from 'react'

/**
 * Keeps a render error in one part of the page from blanking all of it (React unmounts the whole
 * tree on an uncaught render error): shows what failed and a way to try again.
 */
export default class ErrorBoundary extends Component {
  constructor(props) {
    super(props)
    this.state = { error: null }
  }

  static getDerivedStateFromError(error) {
    return { error }
  }

  render() {
    const { error } = this.state
    if (!error) return this.props.children
    return (
      <div className="error" role="alert">
        <p className="error__title">{this.props.title ?? 'This part of the page could not be drawn'}</p>
        <p className="error__message">{String(error.message ?? error)}</p>
        <button type="button" className="button button--quiet" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </div>
    )
  }
}
