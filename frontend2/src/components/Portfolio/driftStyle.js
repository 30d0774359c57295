import { cleanDrift } from '../../format.js'

// How a drift row is drawn: direction from the sign of the drift, hue from the side of the
// target (red over, green under), strength from the band status (pale when within band).

export const DRIFT_COLORS = Object.freeze({
  over: '#c62828', // overweight beyond its band
  overInBand: '#f2a7a7', // overweight but within its band
  under: '#2e7d32', // underweight beyond its band
  underInBand: '#a8d5aa', // underweight but within its band
  onTarget: '#9e9e9e',
  band: '#e3e7ee', // the tolerance band behind the bars
  zeroLine: '#37474f',
})

/**
 * @param {{drift: number, status: 'overweight'|'underweight'|'in_band'}} row
 * @returns {{fill: string, direction: 'right'|'left'|'none', tone: 'strong'|'pale'}}
 */
export function driftStyle(row) {
  const inBand = row.status === 'in_band'
  const tone = inBand ? 'pale' : 'strong'
  const drift = cleanDrift(row.drift)
  if (drift > 0) {
    return { fill: inBand ? DRIFT_COLORS.overInBand : DRIFT_COLORS.over, direction: 'right', tone }
  }
  if (drift < 0) {
    return { fill: inBand ? DRIFT_COLORS.underInBand : DRIFT_COLORS.under, direction: 'left', tone }
  }
  return { fill: DRIFT_COLORS.onTarget, direction: 'none', tone }
}

/** A symmetric axis limit in points that leaves room past the longest bar and the widest band. */
export function axisLimit(rows) {
  const largest = Math.max(0, ...rows.flatMap((r) => [Math.abs(cleanDrift(r.drift)), r.band ?? 0])) * 100
  if (largest === 0) return 1
  const padded = largest * 1.1
  const step = 10 ** Math.floor(Math.log10(padded))
  for (const multiple of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    if (multiple * step >= padded) return multiple * step
  }
  return 10 * step
}
