import { useId } from 'react'
import { formatMoney } from '../../format.js'

const baseName = (file) => file.split(/[\\/]/).pop()

function optionText(account) {
  if (account.error) return `${baseName(account.file)} (cannot be read)`
  return `${account.id} — ${formatMoney(account.value, account.currency)} (${baseName(account.file)})`
}

/** A labelled select of the account files the server was started with. */
export default function AccountPicker({ accounts, value, onChange }) {
  const id = useId()
  return (
    <div className="account-picker">
      <label htmlFor={id}>Account</label>
      <select id={id} value={value ?? ''} onChange={(event) => onChange(event.target.value)}>
        {accounts.map((account) => (
          <option key={account.key} value={account.key} title={account.file}>
            {optionText(account)}
          </option>
        ))}
      </select>
    </div>
  )
}
