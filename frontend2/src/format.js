// Number formatting for the page. Signs are always shown on drifts so that direction never
// depends on colour alone (SPEC: amounts in JSON are unrounded; screens round to the cent).

const POINTS_1 = new Intl.NumberFormat('en-US', {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
  signDisplay: 'exceptZero',
})
const POINTS_2 = new Intl.NumberFormat('en-US', {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
  signDisplay: 'exceptZero',
})
const AXIS_POINTS = new Intl.NumberFormat('en-US', { maximumFractionDigits: 4, signDisplay: 'exceptZero' })
const PERCENT = new Intl.NumberFormat('en-US', {
  style: 'percent',
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
})
const QUANTITY = new Intl.NumberFormat('en-US', { maximumFractionDigits: 6 })
const moneyFormats = new Map()

/** A weight fraction as a percentage: 0.7189 -> "71.9%". */
export function formatPercent(weight) {
  return PERCENT.format(weight)
}

/**
 * A drift as a number to draw and print: float noise (|drift| below 1e-9, a billionth of the
 * account: a cash target of 1 - 0.9 is 0.10000000000000009, so its drift came as -8e-17 and was
 * drawn as "-<0.01 pts") and anything not a finite number are 0.
 */
export function cleanDrift(drift) {
  return Number.isFinite(drift) && Math.abs(drift) >= 1e-9 ? drift : 0
}

/**
 * A drift (weight fraction) in percentage points, signed: 0.1689 -> "+16.9 pts",
 * -0.0008 -> "-0.08 pts", 0.00001 -> "+<0.01 pts", 0 (or float noise, ``cleanDrift``) -> "0.0 pts".
 */
export function formatPoints(drift, { unit = true } = {}) {
  const points = cleanDrift(drift) * 100
  const magnitude = Math.abs(points)
  let text
  if (points === 0) text = POINTS_1.format(0)
  else if (magnitude >= 0.095) text = POINTS_1.format(points)
  else if (magnitude >= 0.005) text = POINTS_2.format(points)
  else text = `${points > 0 ? '+' : '-'}<0.01`
  return unit ? `${text} pts` : text
}

/** An axis tick in points, no trailing zeros: 12.5 -> "+12.5", -25 -> "-25", 0 -> "0". */
export function formatAxisPoints(points) {
  return AXIS_POINTS.format(points)
}

/** Drift in words for screen readers and tooltips: "16.9 points over target". */
export function describeDrift(drift) {
  drift = cleanDrift(drift)
  if (drift === 0) return 'on target'
  const text = formatPoints(Math.abs(drift), { unit: false }).replace(/^\+/, '')
  return `${text} points ${drift > 0 ? 'over' : 'under'} target`
}

/** Money in the account currency, to the cent: 7932.85 -> "$7,932.85". */
export function formatMoney(amount, currency = 'USD', { signed = false } = {}) {
  const key = `${currency}:${signed}`
  let format = moneyFormats.get(key)
  if (!format) {
    try {
      format = new Intl.NumberFormat('en-US', {
        style: 'currency',
        currency,
        // 'negative': no minus on an amount that rounds to zero (-0.001 was "-$0.00")
        signDisplay: signed ? 'exceptZero' : 'negative',
      })
    } catch {
      // An unknown currency code: plain number with the code after it.
      const plain = new Intl.NumberFormat('en-US', {
        minimumFractionDigits: 2,
        maximumFractionDigits: 2,
        signDisplay: signed ? 'exceptZero' : 'negative',
      })
      format = { format: (value) => `${plain.format(value)} ${currency}` }
    }
    moneyFormats.set(key, format)
  }
  return format.format(amount)
}

/**
 * A price per share as the basket files write it: to the cent from 1 up, to 0.0001 below (the
 * quoting increments of SEC Rule 612): 0.00425 -> "$0.0043" (formatMoney showed "$0.00").
 */
export function formatPrice(price, currency = 'USD') {
  if (Math.abs(price) >= 1) return formatMoney(price, currency)
  try {
    return new Intl.NumberFormat('en-US', {
      style: 'currency',
      currency,
      minimumFractionDigits: 4,
      maximumFractionDigits: 4,
    }).format(price)
  } catch {
    return `${price.toFixed(4)} ${currency}`
  }
}

/** Share counts: whole shares print without decimals, fractional ones with up to six. */
export function formatQuantity(quantity) {
  return QUANTITY.format(quantity)
}

/** The statuses the engine reports, in words. */
export const STATUS_TEXT = {
  overweight: 'overweight',
  underweight: 'underweight',
  in_band: 'within band',
}
