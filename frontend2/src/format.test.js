import { describe, expect, it } from 'vitest'
import { axisLimit } from './components/Portfolio/driftStyle.js'
import {
  describeDrift,
  formatAxisPoints,
  formatMoney,
  formatPercent,
  formatPoints,
  formatPrice,
  formatQuantity,
} from './format.js'

describe('formatPoints', () => {
  it.each([
    [0.168881, '+16.9 pts'],
    [-0.3, '-30.0 pts'],
    [1, '+100.0 pts'],
    [-1, '-100.0 pts'],
    [0, '0.0 pts'],
    [0.0004, '+0.04 pts'],
    [-0.00012, '-0.01 pts'],
    [0.000001, '+<0.01 pts'],
    [-0.000001, '-<0.01 pts'],
  ])('%s -> %s', (drift, text) => {
    expect(formatPoints(drift)).toBe(text)
  })

  it('can leave out the unit', () => {
    expect(formatPoints(0.05, { unit: false })).toBe('+5.0')
  })
})

describe('describeDrift', () => {
  it('says the direction in words', () => {
    expect(describeDrift(0.169)).toBe('16.9 points over target')
    expect(describeDrift(-0.0004)).toBe('0.04 points under target')
    expect(describeDrift(0)).toBe('on target')
  })
})

describe('formatMoney', () => {
  it('rounds to the cent in the account currency', () => {
    expect(formatMoney(7879.199999999999)).toBe('$7,879.20')
    expect(formatMoney(1234.5, 'EUR')).toBe('€1,234.50')
    expect(formatMoney(-30112.125, 'USD', { signed: true })).toBe('-$30,112.13')
    expect(formatMoney(12, 'USD', { signed: true })).toBe('+$12.00')
  })

  it('never shows a minus on an amount that rounds to zero', () => {
    expect(formatMoney(-0.001)).toBe('$0.00')
    expect(formatMoney(-0.004, 'USD', { signed: true })).toBe('$0.00')
    expect(formatMoney(-0.004, 'XYZ1')).toBe('0.00 XYZ1')
    expect(formatMoney(-5)).toBe('-$5.00')
  })

  it('writes a price per share below 1 to 0.0001, as the basket files do', () => {
    expect(formatPrice(0.00425)).toBe('$0.0043')
    expect(formatPrice(298.4)).toBe('$298.40')
    expect(formatPrice(0.5, 'XYZ1')).toBe('0.5000 XYZ1')
  })

  it('falls back to the code for a currency Intl does not know', () => {
    expect(formatMoney(5, 'XYZ1')).toBe('5.00 XYZ1')
  })
})

describe('other formats', () => {
  it('formats weights and share counts', () => {
    expect(formatPercent(0.7188810593319567)).toBe('71.9%')
    expect(formatQuantity(28)).toBe('28')
    expect(formatQuantity(1.2345678)).toBe('1.234568')
  })
})

describe('axisLimit', () => {
  const r = (drift, band = 0.05) => ({ drift, band })
  it('leaves room past the longest bar on a round number', () => {
    expect(axisLimit([r(0.1688), r(-0.3)])).toBe(40)
    expect(axisLimit([r(1)])).toBe(120)
  })
  it('is never narrower than the widest band', () => {
    expect(axisLimit([r(0.001, 0.05)])).toBe(6)
  })
  it('has a positive span when nothing drifts', () => {
    expect(axisLimit([r(0, 0)])).toBe(1)
    expect(axisLimit([])).toBe(1)
  })
})

describe('formatAxisPoints', () => {
  it('drops trailing zeros and keeps the sign', () => {
    expect([-25, -12.5, 0, 12.5, 25].map(formatAxisPoints)).toEqual(['-25', '-12.5', '0', '+12.5', '+25'])
  })
})
