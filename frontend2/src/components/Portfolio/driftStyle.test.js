import { describe, expect, it } from 'vitest'
import { DRIFT_COLORS, driftStyle } from './driftStyle.js'

const rgb = (hex) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16))
const lightness = (hex) => rgb(hex).reduce((a, b) => a + b, 0)

describe('drift colours', () => {
  it('are red over the target and green under it', () => {
    for (const hex of [DRIFT_COLORS.over, DRIFT_COLORS.overInBand]) {
      const [r, g, b] = rgb(hex)
      expect(r).toBeGreaterThan(g)
      expect(r).toBeGreaterThan(b)
    }
    for (const hex of [DRIFT_COLORS.under, DRIFT_COLORS.underInBand]) {
      const [r, g, b] = rgb(hex)
      expect(g).toBeGreaterThan(r)
      expect(g).toBeGreaterThan(b)
    }
  })

  it('are paler within the band', () => {
    expect(lightness(DRIFT_COLORS.overInBand)).toBeGreaterThan(lightness(DRIFT_COLORS.over))
    expect(lightness(DRIFT_COLORS.underInBand)).toBeGreaterThan(lightness(DRIFT_COLORS.under))
  })
})

describe('driftStyle', () => {
  it.each([
    [{ drift: 0.2, status: 'overweight' }, { fill: DRIFT_COLORS.over, direction: 'right', tone: 'strong' }],
    [{ drift: 0.02, status: 'in_band' }, { fill: DRIFT_COLORS.overInBand, direction: 'right', tone: 'pale' }],
    [{ drift: -0.2, status: 'underweight' }, { fill: DRIFT_COLORS.under, direction: 'left', tone: 'strong' }],
    [{ drift: -0.02, status: 'in_band' }, { fill: DRIFT_COLORS.underInBand, direction: 'left', tone: 'pale' }],
    [{ drift: 0, status: 'in_band' }, { fill: DRIFT_COLORS.onTarget, direction: 'none', tone: 'pale' }],
  ])('%j', (row, style) => {
    expect(driftStyle(row)).toEqual(style)
  })
})
