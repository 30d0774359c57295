/** An API error as the CLI would print it: the message, and the file and key path it names. */
export default function ErrorMessage({ error, title = 'Something went wrong' }) {
  if (!error) return null
  return (
    <div className="error" role="alert">
      <p className="error__title">{title}</p>
      <p className="error__message">{error.message}</p>
      {(error.file || error.path) && (
        <p className="error__where">
          {error.file && (
            <>
              File <code>{error.file}</code>
            </>
          )}
          {error.file && error.path && ', '}
          {error.path && (
            <>
              key <code>{error.path}</code>
            </>
          )}
        </p>
      )}
    </div>
  )
}
