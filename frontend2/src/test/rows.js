// Drift rows as the API sends them (rebalance_opt.drift_report(...).to_dict()["classes"]).
export function row(name, current, target, { band = 0.05, total = 100000 } = {}) {
  const drift = current - target
  const status = drift > band + 1e-9 ? 'overweight' : drift < -band - 1e-9 ? 'underweight' : 'in_band'
  return { name, current_weight: current, target_weight: target, drift, status, band, value: current * total }
}
