//! A service's prices under its on-chain ceilings: a share of the ceilings
//! that follows the service's load (in-flight requests, smoothed), times a
//! tier multiplier for long prompts or long requested outputs, with
//! prompt tokens the upstream served from its cache at the cached price.
//! The broker signs the prices in force as a short-lived quote; a request
//! sent under a quote pays at most the quote's prices.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use serde::Deserialize;
use zg_core::{Prices, Quote, Tier, U256};

/// Basis points squared: a demand share times a tier multiplier.
const WHOLE: u64 = 100_000_000;
/// Steps the load is rounded to before it sets a price, so that the price
/// does not move on every request.
const LOAD_STEPS: f64 = 20.0;

/// `[services.pricing]` of provider.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Share of the ceilings charged while the service is idle (0 < floor <= peak).
    #[serde(default = "one")]
    pub floor: f64,
    /// Share of the ceilings charged at full load.
    #[serde(default = "one")]
    pub peak: f64,
    /// In-flight requests at which the load counts as full (the upstream's
    /// parallel slots, say).
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Time constant of the load's moving average, in seconds.
    #[serde(default = "default_smoothing")]
    pub smoothing_secs: f64,
    /// How long a quote stays valid, in seconds.
    #[serde(default = "default_quote_secs")]
    pub quote_secs: u64,
    /// Dearer tiers for long prompts or long requested outputs, in order
    /// of non-decreasing multiplier; the last one a request meets applies.
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            floor: 1.0,
            peak: 1.0,
            capacity: default_capacity(),
            smoothing_secs: default_smoothing(),
            quote_secs: default_quote_secs(),
            tiers: Vec::new(),
        }
    }
}

/// `[[services.pricing.tiers]]`: requests whose prompt has at least
/// `min_prompt_tokens` and that ask for at least `min_output_tokens` pay
/// the demand price times `multiplier`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    #[serde(default)]
    pub min_prompt_tokens: u64,
    #[serde(default)]
    pub min_output_tokens: u64,
    pub multiplier: f64,
}

fn one() -> f64 {
    1.0
}
fn default_capacity() -> u32 {
    4
}
fn default_smoothing() -> f64 {
    10.0
}
fn default_quote_secs() -> u64 {
    30
}

/// A share as basis points, if it is a finite number in `0..=limit`.
fn bps(x: f64, limit: f64) -> Option<u64> {
    (x.is_finite() && (0.0..=limit).contains(&x)).then(|| (x * 10_000.0).round() as u64)
}

impl PricingConfig {
    /// Checks the policy can never charge above a ceiling; the error names
    /// the key (under `services[i].pricing`) and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let err = |key: &str, why: String| Err((key.to_owned(), why));
        let Some(floor) = bps(self.floor, 1.0).filter(|b| *b > 0) else {
            return err(
                "floor",
                format!(
                    "expected a share of the ceilings in (0, 1], got {}",
                    self.floor
                ),
            );
        };
        let Some(peak) = bps(self.peak, 1.0) else {
            return err(
                "peak",
                format!(
                    "expected a share of the ceilings in (0, 1], got {}: a price above the on-chain ceiling is refused by every client",
                    self.peak
                ),
            );
        };
        if peak < floor {
            return err(
                "peak",
                format!(
                    "expected at least floor ({}), got {}",
                    self.floor, self.peak
                ),
            );
        }
        if self.capacity == 0 {
            return err("capacity", "expected at least 1 request".into());
        }
        if !(self.smoothing_secs.is_finite() && self.smoothing_secs >= 0.0) {
            return err(
                "smoothing_secs",
                format!("expected seconds, 0 or more, got {}", self.smoothing_secs),
            );
        }
        if !(1..=3600).contains(&self.quote_secs) {
            return err(
                "quote_secs",
                format!("expected 1 to 3600 seconds, got {}", self.quote_secs),
            );
        }
        let mut last = 0;
        for (i, tier) in self.tiers.iter().enumerate() {
            let key = |k: &str| format!("tiers[{i}].{k}");
            if tier.min_prompt_tokens == 0 && tier.min_output_tokens == 0 {
                return err(
                    &key("min_prompt_tokens"),
                    "a tier needs min_prompt_tokens or min_output_tokens above 0".into(),
                );
            }
            let Some(m) = bps(tier.multiplier, f64::MAX).filter(|m| *m > 0) else {
                return err(
                    &key("multiplier"),
                    format!("expected a positive number, got {}", tier.multiplier),
                );
            };
            if m < last {
                return err(
                    &key("multiplier"),
                    "tiers go in order of non-decreasing multiplier (the last tier a request meets applies)".into(),
                );
            }
            if peak.saturating_mul(m) > WHOLE {
                return err(
                    &key("multiplier"),
                    format!(
                        "peak {} x multiplier {} charges {:.0}% of the on-chain ceiling: lower the multiplier or the peak so that their product is at most 1",
                        self.peak,
                        tier.multiplier,
                        self.peak * tier.multiplier * 100.0
                    ),
                );
            }
            last = m;
        }
        Ok(())
    }
}

/// The policy of one service, checked, with its load.
#[derive(Debug)]
pub(crate) struct Pricing {
    floor: u64,
    peak: u64,
    capacity: f64,
    smoothing_secs: f64,
    quote_secs: u64,
    /// `(min_prompt_tokens, min_output_tokens, multiplier in bps)`.
    tiers: Vec<(u64, u64, u64)>,
    in_flight: AtomicU64,
    /// The smoothed load (1.0 = `capacity` requests in flight) and when
    /// it was last brought up to date.
    smoothed: Mutex<(f64, Instant)>,
}

/// One request counted in its service's load until dropped.
pub(crate) struct InFlight(Arc<Pricing>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.advance();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pricing {
    /// The policy of `config`, which [`PricingConfig::check`] passed.
    pub(crate) fn new(config: &PricingConfig) -> Self {
        let share = |x: f64| bps(x, f64::MAX).unwrap_or(10_000);
        Self {
            floor: share(config.floor),
            peak: share(config.peak),
            capacity: f64::from(config.capacity.max(1)),
            smoothing_secs: config.smoothing_secs,
            quote_secs: config.quote_secs,
            tiers: config
                .tiers
                .iter()
                .map(|t| {
                    (
                        t.min_prompt_tokens,
                        t.min_output_tokens,
                        share(t.multiplier),
                    )
                })
                .collect(),
            in_flight: AtomicU64::new(0),
            smoothed: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Counts a request in the load until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.advance();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Brings the moving average up to now: the in-flight count has been
    /// what it is since the last update, so the average decays towards it
    /// exactly (`exp(-dt / smoothing)`). Returns the smoothed load.
    fn advance(&self) -> f64 {
        let now_load = (self.in_flight.load(Ordering::Relaxed) as f64 / self.capacity).min(1.0);
        let mut smoothed = self.smoothed.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let dt = now.duration_since(smoothed.1).as_secs_f64();
        let keep = if self.smoothing_secs > 0.0 {
            (-dt / self.smoothing_secs).exp()
        } else {
            0.0
        };
        smoothed.0 = now_load + (smoothed.0 - now_load) * keep;
        smoothed.1 = now;
        smoothed.0
    }

    /// The load as prices see it: smoothed, in steps of 5%.
    pub(crate) fn load(&self) -> f64 {
        (self.advance() * LOAD_STEPS).round() / LOAD_STEPS
    }

    /// The prices in force now, tier by tier, under `ceiling`.
    pub(crate) fn tiers(&self, ceiling: &Prices) -> Vec<Tier> {
        let load = self.load();
        let share = self.floor + ((self.peak - self.floor) as f64 * load).round() as u64;
        let at = |multiplier: u64| {
            let k = share.saturating_mul(multiplier).min(WHOLE);
            Prices {
                input: scale(ceiling.input, k),
                output: scale(ceiling.output, k),
                cached: scale(ceiling.cached, k),
            }
        };
        std::iter::once(Tier {
            min_prompt_tokens: 0,
            min_output_tokens: 0,
            prices: at(10_000),
        })
        .chain(self.tiers.iter().map(|&(p, o, m)| Tier {
            min_prompt_tokens: p,
            min_output_tokens: o,
            prices: at(m),
        }))
        .collect()
    }

    /// A quote of the prices in force now, valid for `quote_secs`.
    pub(crate) fn quote(
        &self,
        provider: zg_core::Address,
        service: zg_core::B256,
        ceiling: &Prices,
        max_output_tokens: u64,
        now: u64,
    ) -> Quote {
        Quote {
            provider,
            service,
            issued_at: now,
            valid_until: now.saturating_add(self.quote_secs),
            max_output_tokens,
            tiers: self.tiers(ceiling),
        }
    }
}

/// `price * k / WHOLE`, rounded down, for `k <= WHOLE`, without overflow.
fn scale(price: U256, k: u64) -> U256 {
    let whole = U256::from(WHOLE);
    let k = U256::from(k.min(WHOLE));
    (price / whole) * k + (price % whole) * k / whole
}

/// The prices an answer pays: the tier it meets in `current` (the prices in
/// force when it was admitted), and no more than in the quote it was sent
/// under, if any.
pub(crate) fn applied(
    current: &Quote,
    accepted: Option<&Quote>,
    prompt_tokens: u64,
    requested_output: u64,
) -> Prices {
    let now = current
        .prices_for(prompt_tokens, requested_output)
        .unwrap_or_default();
    match accepted.and_then(|q| q.prices_for(prompt_tokens, requested_output)) {
        Some(q) => Prices {
            input: now.input.min(q.input),
            output: now.output.min(q.output),
            cached: now.cached.min(q.cached),
        },
        None => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> PricingConfig {
        toml::from_str(text).unwrap()
    }

    fn ceiling() -> Prices {
        Prices::new(U256::from(1_000u64), U256::from(2_000u64)).with_cached(U256::from(100u64))
    }

    #[test]
    fn a_policy_that_could_pass_a_ceiling_is_refused_by_key() {
        let over = policy(
            "floor = 0.5\npeak = 0.9\n[[tiers]]\nmin_prompt_tokens = 1000\nmultiplier = 1.2",
        );
        let (key, why) = over.check().unwrap_err();
        assert_eq!(key, "tiers[0].multiplier");
        assert!(why.contains("108%"), "{why}");
        assert_eq!(policy("peak = 1.1").check().unwrap_err().0, "peak");
        assert_eq!(policy("floor = 0").check().unwrap_err().0, "floor");
        assert_eq!(
            policy("floor = 0.8\npeak = 0.5").check().unwrap_err().0,
            "peak"
        );
        let unordered = "floor = 0.5\npeak = 0.5\n[[tiers]]\nmin_prompt_tokens = 10\nmultiplier = 1.5\n\
                         [[tiers]]\nmin_output_tokens = 10\nmultiplier = 1.2";
        assert_eq!(
            policy(unordered).check().unwrap_err().0,
            "tiers[1].multiplier"
        );
        assert!(
            policy("floor = 0.5\npeak = 0.8\n[[tiers]]\nmin_prompt_tokens = 1\nmultiplier = 1.25")
                .check()
                .is_ok()
        );
    }

    #[test]
    fn idle_pays_the_floor_full_load_the_peak_and_tiers_multiply() {
        let config = policy(
            "floor = 0.5\npeak = 0.8\ncapacity = 2\nsmoothing_secs = 0\n\
             [[tiers]]\nmin_prompt_tokens = 1000\nmultiplier = 1.25",
        );
        config.check().unwrap();
        let pricing = Arc::new(Pricing::new(&config));
        let idle = pricing.tiers(&ceiling());
        assert_eq!(idle[0].prices.input, U256::from(500u64));
        assert_eq!(idle[0].prices.cached, U256::from(50u64));
        assert_eq!(idle[1].prices.output, U256::from(1_250u64));
        let (_a, _b) = (pricing.enter(), pricing.enter());
        let full = pricing.tiers(&ceiling());
        assert_eq!(full[0].prices.input, U256::from(800u64));
        assert_eq!(full[1].prices.input, U256::from(1_000u64));
        assert!(full.iter().all(|t| t.prices.within(&ceiling())));
    }

    #[test]
    fn load_is_smoothed_and_falls_back() {
        let config = policy("floor = 0.5\ncapacity = 1\nsmoothing_secs = 0.2");
        let pricing = Arc::new(Pricing::new(&config));
        let busy = pricing.enter();
        assert!(
            pricing.load() < 0.5,
            "a request that just came barely moves the average"
        );
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert_eq!(pricing.load(), 1.0);
        drop(busy);
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert_eq!(pricing.load(), 0.0);
    }

    #[test]
    fn an_answer_pays_its_tier_and_at_most_its_quote() {
        let config = policy("floor = 0.5\n[[tiers]]\nmin_prompt_tokens = 1000\nmultiplier = 2");
        let pricing = Pricing::new(&config);
        let idle = pricing.quote(Default::default(), Default::default(), &ceiling(), 256, 100);
        assert_eq!(applied(&idle, None, 10, 256).input, U256::from(500u64));
        assert_eq!(applied(&idle, None, 1_000, 256).input, U256::from(1_000u64));
        let mut cheaper = idle.clone();
        cheaper.tiers[1].prices.input = U256::from(700u64);
        assert_eq!(
            applied(&idle, Some(&cheaper), 5_000, 1).input,
            U256::from(700u64)
        );
        assert_eq!(scale(U256::MAX, WHOLE), U256::MAX);
    }
}
