// End-to-end: the real server (`python cli.py serve`) and the built page in Debian's Chromium.
//
//   node --test e2e/drift.test.mjs      (from frontend2/, after `npm run build`)
//
// Environment: PYTHON (default ../.venv/bin/python), CHROMIUM (default /usr/bin/chromium),
// E2E_OUTPUT_DIR (default ../test-output/e2e), UPDATE_DOCS=1 to copy the screenshot to
// docs/drift.png for the README.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { DRIFT_COLORS } from '../src/components/Portfolio/driftStyle.js'
import { formatMoney, formatPercent, formatPoints } from '../src/format.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const REPO = resolve(HERE, '..', '..')
const PYTHON = process.env.PYTHON
  ? process.env.PYTHON.includes('/')
    ? resolve(process.env.PYTHON) // relative to where the test was started, not to REPO
    : process.env.PYTHON
  : join(REPO, '.venv', 'bin', 'python')
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
const OUTPUT_DIR = resolve(process.env.E2E_OUTPUT_DIR ?? join(REPO, 'test-output', 'e2e'))
const EXAMPLE = join(REPO, 'examples', 'household.toml')
const SECOND = join(REPO, 'examples', 'wash_sale.toml')
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

let server
let baseUrl
let context
let page
let scratch
const pageErrors = []

function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer()
    probe.once('error', fail)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => ok(port))
    })
  })
}

/** Starts `python cli.py serve FILES --port N` and resolves once the API answers. */
async function startServer(files) {
  const port = await freePort()
  const args = existsSync(join(REPO, 'cli.py'))
    ? ['cli.py', 'serve', ...files, '--port', String(port)]
    : ['-c', `import sys; from rebalance_opt.server import run; run(sys.argv[1:], port=${port})`, ...files]
  const child = spawn(PYTHON, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  const exited = new Promise((ok) => {
    child.once('exit', (code, signal) => ok(code ?? signal))
    child.once('error', (err) => ok(`${err.message}`)) // e.g. no such Python
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const code = await Promise.race([exited, sleep(200, undefined, { ref: false })])
    if (code !== undefined) throw new Error(`server exited with ${code}:\n${log}`)
    try {
      if ((await fetch(`${url}/api/accounts`)).ok) return { child, url, exited, log: () => log }
    } catch {
      // not listening yet
    }
  }
  child.kill('SIGKILL')
  throw new Error(`server did not answer within 30 s:\n${log}`)
}

async function api(path, init) {
  const response = await fetch(`${baseUrl}${path}`, init)
  assert.ok(response.ok, `${path}: HTTP ${response.status}`)
  return response.json()
}

/** The colour rule of issue 5, stated independently of the page's own driftStyle(). */
function expectedFill(row) {
  if (row.status === 'overweight') return DRIFT_COLORS.over
  if (row.status === 'underweight') return DRIFT_COLORS.under
  return row.drift > 0 ? DRIFT_COLORS.overInBand : DRIFT_COLORS.underInBand
}

/**
 * What the page drew for each drift bar of one chart of `rows`, top to bottom, once it is
 * drawn whole: recharts paints bars, axis ticks and labels in separate passes.
 */
async function readChart(figureName, rows) {
  const figure = page.getByRole('figure', { name: figureName })
  await figure.waitFor()
  const drawn = rows.filter((r) => r.drift !== 0).length
  await figure.evaluate(
    (el, [ticks, bars]) =>
      new Promise((ok, fail) => {
        const count = (selector) => el.querySelectorAll(selector).length
        const seen = () => [count('text.drift-tick'), count('text.drift-value'), count('path.drift-bar')]
        const deadline = performance.now() + 10_000
        const check = () => {
          const [t, v, b] = seen()
          if (t === ticks && v === ticks && b === bars) requestAnimationFrame(() => ok())
          else if (performance.now() > deadline) fail(new Error(`chart drew ${t} ticks, ${v} labels, ${b} bars`))
          else requestAnimationFrame(check)
        }
        check()
      }),
    [rows.length, drawn],
  )
  return figure.evaluate((el) => {
    const zero = el.querySelector('.recharts-reference-line-line').getBoundingClientRect()
    const bars = [...el.querySelectorAll('path.drift-bar')].map((bar) => {
      const box = bar.getBoundingClientRect()
      return {
        name: bar.dataset.name,
        fill: bar.getAttribute('fill'),
        status: bar.dataset.status,
        left: box.left,
        right: box.right,
        top: box.top,
        width: box.width,
      }
    })
    const ticks = Object.fromEntries(
      [...el.querySelectorAll('text.drift-tick')].map((t) => [t.dataset.name, t.textContent]),
    )
    const values = [...el.querySelectorAll('text.drift-value')].map((t) => t.textContent)
    return { zeroX: zero.left + zero.width / 2, bars: bars.sort((a, b) => a.top - b.top), ticks, values }
  })
}

before(async () => {
  assert.ok(existsSync(join(REPO, 'rebalance_opt', 'web', 'index.html')), 'run `npm run build` first')
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install -y chromium)`)
  scratch = await mkdtemp(join(tmpdir(), 'rebalance-opt-e2e-'))
  const broken = join(scratch, 'broken.toml')
  await writeFile(broken, '[account]\nid = "broken"\ncash = -5\nas_of = "2026-11-24"\n')
  server = await startServer([EXAMPLE, SECOND, broken])
  baseUrl = server.url
  context = await chromium.launchPersistentContext(join(scratch, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1440, height: 1000 },
    deviceScaleFactor: 1,
  })
  page = context.pages()[0] ?? (await context.newPage())
  page.on('pageerror', (err) => pageErrors.push(String(err)))
  page.on('console', (msg) => {
    // The malformed account's 422 is expected; any other console error is not.
    if (msg.type() === 'error' && !/status of 422\b/.test(msg.text())) pageErrors.push(msg.text())
  })
  await page.goto(baseUrl)
})

after(async () => {
  await context?.close()
  if (server) {
    server.child.kill('SIGTERM')
    const code = await Promise.race([server.exited, sleep(10_000, 'timeout', { ref: false })])
    if (code === 'timeout') server.child.kill('SIGKILL')
  }
  if (scratch) await rm(scratch, { recursive: true, force: true })
})

describe('drift visualizer in Chromium', { timeout: 120_000 }, () => {
  test('draws one bar per class, in the engine’s order, coloured and placed by drift', async () => {
    const report = await api('/api/accounts/0/drift')
    const chart = await readChart('Drift now', report.classes)
    const drawn = report.classes.filter((r) => r.drift !== 0) // on target: no bar, only its label
    assert.deepEqual(
      chart.bars.map((b) => b.name),
      drawn.map((r) => r.name),
    )
    assert.equal(chart.bars.at(-1).name, 'CASH')
    for (const row of report.classes) {
      assert.equal(chart.ticks[row.name], `${row.name}${formatPercent(row.current_weight)} now · ${formatPercent(row.target_weight)} target`)
    }
    for (const row of drawn) {
      const bar = chart.bars.find((b) => b.name === row.name)
      assert.equal(bar.fill, expectedFill(row), `${row.name} colour`)
      assert.equal(bar.status, row.status)
      if (row.drift > 0) assert.ok(bar.left >= chart.zeroX - 1.5 && bar.right > chart.zeroX + 1, `${row.name} right`)
      if (row.drift < 0) assert.ok(bar.right <= chart.zeroX + 1.5 && bar.left < chart.zeroX - 1, `${row.name} left`)
    }
    assert.deepEqual(chart.values, report.classes.map((r) => formatPoints(r.drift)))
    // The example exists to show every case: red beyond the band, green beyond it, pale within.
    const fills = new Set(chart.bars.map((b) => b.fill))
    for (const kind of ['over', 'under', 'underInBand']) assert.ok(fills.has(DRIFT_COLORS[kind]), kind)
    // Lengths in proportion to drift: the longest bar against the longest on the other side.
    const longest = (sign) => drawn.filter((r) => Math.sign(r.drift) === sign).sort((a, b) => Math.abs(b.drift) - Math.abs(a.drift))[0]
    const [over, under] = [longest(1), longest(-1)]
    const width = (row) => chart.bars.find((b) => b.name === row.name).width
    const ratio = width(over) / width(under)
    const expected = Math.abs(over.drift / under.drift)
    assert.ok(Math.abs(ratio - expected) / expected < 0.03, `bar ratio ${ratio} vs drift ratio ${expected}`)
  })

  test('the tooltip gives the money amount', async () => {
    const report = await api('/api/accounts/0/drift')
    const row = report.classes.find((r) => r.status === 'overweight')
    const bar = page.getByRole('figure', { name: 'Drift now' }).locator(`path.drift-bar[data-name="${row.name}"]`)
    await bar.hover()
    const tooltip = page.locator('.drift-tooltip')
    await tooltip.waitFor()
    const text = await tooltip.textContent()
    const money = (amount, signed) => formatMoney(amount, report.currency, { signed })
    assert.ok(text.startsWith(`${row.name} (overweight)`), text)
    assert.ok(text.includes(`Now${money(row.value)} (${formatPercent(row.current_weight)})`), text)
    const difference = row.value - row.target_weight * report.value
    assert.ok(text.includes(`Difference${money(difference, true)} (${formatPoints(row.drift)})`), text)
    assert.match(text, /Difference\+\$[\d,]+\.\d\d/)
  })

  test('generate plan shows the orders, the estimated tax and the drift after', async () => {
    const expected = await api('/api/accounts/0/plan', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
    })
    await page.getByRole('button', { name: 'Generate plan' }).click()
    const result = page.getByRole('region', { name: 'Plan result' })
    const orders = result.getByRole('table', { name: 'Proposed orders' })
    await orders.waitFor()
    const symbols = await orders.locator('tbody th[scope="row"]').allTextContents()
    assert.deepEqual(symbols, expected.orders.map((o) => o.symbol))
    assert.ok(symbols.length > 0)
    const sides = await orders.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.side))
    assert.deepEqual(sides, expected.orders.map((o) => o.side))
    const tax = await result.getByLabel('Tax and cash').textContent()
    assert.match(tax, /Estimated tax\$[\d,]+\.\d\d/)
    const afterChart = await readChart('Drift after the plan', expected.drift_after_rows)
    assert.deepEqual(
      afterChart.bars.map((b) => b.name),
      expected.drift_after_rows.filter((r) => r.drift !== 0).map((r) => r.name),
    )
    const outside = expected.drift_after_rows.filter((r) => r.status !== 'in_band').length
    const summary = await page.getByRole('figure', { name: 'Drift after the plan' }).locator('.drift__summary').textContent()
    assert.equal(summary, `${outside} of ${expected.drift_after_rows.length} classes are outside the band.`)

    await mkdir(OUTPUT_DIR, { recursive: true })
    await page.mouse.move(0, 0) // no tooltip in the picture
    const shot = join(OUTPUT_DIR, 'drift.png')
    await page.screenshot({ path: shot, fullPage: true })
    if (process.env.UPDATE_DOCS === '1') {
      await mkdir(join(REPO, 'docs'), { recursive: true })
      await copyFile(shot, join(REPO, 'docs', 'drift.png'))
    }
  })

  test('picking another account redraws its drift and clears the plan', async () => {
    const report = await api('/api/accounts/1/drift')
    await page.getByLabel('Account').selectOption('1')
    await page.getByText(report.account, { exact: true }).waitFor()
    const chart = await readChart('Drift now', report.classes)
    assert.deepEqual(chart.bars.map((b) => b.name), report.classes.filter((r) => r.drift !== 0).map((r) => r.name))
    assert.equal(await page.getByRole('region', { name: 'Plan result' }).count(), 0)
  })

  test('a malformed account file shows the engine’s message, not a crash', async () => {
    const response = await fetch(`${baseUrl}/api/accounts/2/drift`)
    assert.equal(response.status, 422)
    const { error } = await response.json()
    await page.getByLabel('Account').selectOption('2')
    const alert = page.getByRole('alert')
    await alert.waitFor()
    const text = await alert.textContent()
    assert.ok(text.includes(error.message), `${text} should include ${error.message}`)
    assert.ok(error.path, 'the error names the key')
    assert.ok(text.includes(error.path))
  })

  test('no script errors in the page', () => {
    assert.deepEqual(pageErrors, [])
  })
})
