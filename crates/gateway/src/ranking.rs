//! Provider choice per request: the cheapest estimated fee, made dearer by
//! measured latency, with providers that failed recently moved to the back
//! (a cooldown that doubles with each failure in a row) and providers caught
//! lying left out for the rest of the session (a failed audit is a lie). A
//! provider whose answers passed an audit this session counts as
//! [`AUDITED_DISCOUNT`] of its cost, so it wins over unaudited ones within
//! 10%. A request can sort by price, latency or throughput alone instead
//! (OpenRouter's `provider.sort`); then a passed audit only breaks ties.

use crate::routing::Sort;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};
use zg_core::{Address, B256, Prices, Service, U256};

/// Per (provider, service id), the prices its quote names for the request
/// at hand; a service without one is ranked at its ceilings.
pub(crate) type Quoted = HashMap<(Address, B256), Prices>;

/// What a provider that passed an audit (and failed none: that bans) costs
/// in the ranking, as a share of its estimated cost.
pub(crate) const AUDITED_DISCOUNT: f64 = 0.9;

/// How the router trades price against latency and failures.
#[derive(Debug, Clone, Copy)]
pub struct RankingPolicy {
    /// A provider this many milliseconds slower costs twice as much.
    pub latency_scale_ms: f64,
    /// First cooldown after a failure; doubles per failure in a row (up to 16x).
    pub failure_cooldown: Duration,
}

impl Default for RankingPolicy {
    fn default() -> Self {
        Self {
            latency_scale_ms: 1000.0,
            failure_cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Stats {
    /// Exponentially weighted time to the first byte of an answer.
    latency_ms: Option<f64>,
    /// Exponentially weighted output tokens per second of whole answers.
    tokens_per_s: Option<f64>,
    failures_in_a_row: u32,
    cooling_until: Option<Instant>,
    banned: Option<String>,
    audits_passed: u32,
    /// The body of the last request it answered: a new request that
    /// repeats its start (a chat's next turn) may find it in the
    /// provider's prompt cache.
    last_body: Option<bytes::Bytes>,
}

/// Per-provider measurements, shared by every request of the gateway.
#[derive(Debug, Default)]
pub struct Ranking {
    policy: RankingPolicy,
    stats: Mutex<HashMap<Address, Stats>>,
}

/// A provider's standing, for `/zg/providers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Standing {
    pub provider: Address,
    pub latency_ms: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub failures_in_a_row: u32,
    pub cooling: bool,
    pub banned: Option<String>,
    /// Audits of its answers that passed this session.
    pub audits_passed: u32,
}

impl Ranking {
    pub(crate) fn new(policy: RankingPolicy) -> Self {
        Self {
            policy,
            stats: Mutex::default(),
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Stats>> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Orders `candidates` best first (by `sort` when the request names
    /// one); banned providers are dropped. `input_tokens`/`output_tokens`
    /// estimate the request for the price, at the quoted prices where
    /// `quoted` has them (else the ceilings). A provider not yet measured
    /// counts as fast, so that it gets measured; one that passed an audit
    /// counts as cheaper (or, by `sort`, wins ties).
    pub(crate) fn rank(
        &self,
        candidates: Vec<Service>,
        quoted: &Quoted,
        (input_tokens, output_tokens): (u64, u64),
        sort: Option<Sort>,
    ) -> Vec<Service> {
        let now = Instant::now();
        let stats = self.stats();
        let mut scored: Vec<(bool, f64, f64, bool, Service)> = candidates
            .into_iter()
            .filter_map(|s| {
                let st = stats.get(&s.provider).cloned().unwrap_or_default();
                if st.banned.is_some() {
                    return None;
                }
                let prices = quoted.get(&(s.provider, s.id())).unwrap_or(&s.prices);
                let fee = prices
                    .input
                    .saturating_mul(U256::from(input_tokens))
                    .saturating_add(prices.output.saturating_mul(U256::from(output_tokens)));
                // One neuron more so free services still compare by latency.
                let fee: f64 = f64::from(fee.saturating_add(U256::from(1u64)));
                let latency = st.latency_ms.unwrap_or(0.0);
                let slow = 1.0 + latency / self.policy.latency_scale_ms;
                let audited = st.audits_passed > 0;
                let edge = if audited { AUDITED_DISCOUNT } else { 1.0 };
                let (first, then) = match sort {
                    None => (fee * slow * edge, 0.0),
                    Some(Sort::Price) => (fee, latency),
                    Some(Sort::Latency) => (latency, fee),
                    Some(Sort::Throughput) => (-st.tokens_per_s.unwrap_or(f64::INFINITY), fee),
                };
                let cooling = st.cooling_until.is_some_and(|t| t > now);
                Some((cooling, first, then, !audited, s))
            })
            .collect();
        scored.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        scored.into_iter().map(|(.., s)| s).collect()
    }

    /// A whole answer of `tokens` output tokens took `elapsed`.
    pub(crate) fn throughput(&self, provider: Address, tokens: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if tokens == 0 || secs <= 0.0 {
            return;
        }
        let rate = tokens as f64 / secs;
        let mut stats = self.stats();
        let st = stats.entry(provider).or_default();
        st.tokens_per_s = Some(match st.tokens_per_s {
            Some(old) => old * 0.7 + rate * 0.3,
            None => rate,
        });
    }

    pub(crate) fn success(&self, provider: Address, first_byte: Duration) {
        let ms = first_byte.as_secs_f64() * 1000.0;
        let mut stats = self.stats();
        let st = stats.entry(provider).or_default();
        st.latency_ms = Some(match st.latency_ms {
            Some(old) => old * 0.7 + ms * 0.3,
            None => ms,
        });
        st.failures_in_a_row = 0;
        st.cooling_until = None;
    }

    pub(crate) fn failure(&self, provider: Address) {
        let mut stats = self.stats();
        let st = stats.entry(provider).or_default();
        st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
        let factor = 1u32 << st.failures_in_a_row.saturating_sub(1).min(4);
        st.cooling_until = Some(Instant::now() + self.policy.failure_cooldown * factor);
    }

    /// `provider` answered a request of `body`.
    pub(crate) fn answered(&self, provider: Address, body: bytes::Bytes) {
        self.stats().entry(provider).or_default().last_body = Some(body);
    }

    /// How many leading bytes `body` shares with the last request
    /// `provider` answered.
    pub(crate) fn shared_prefix(&self, provider: Address, body: &[u8]) -> usize {
        let stats = self.stats();
        let Some(last) = stats.get(&provider).and_then(|st| st.last_body.as_ref()) else {
            return 0;
        };
        last.iter().zip(body).take_while(|(a, b)| a == b).count()
    }

    /// An audit of one of `provider`'s answers passed.
    pub(crate) fn audit_passed(&self, provider: Address) {
        let mut stats = self.stats();
        let st = stats.entry(provider).or_default();
        st.audits_passed = st.audits_passed.saturating_add(1);
    }

    /// A provider whose receipt failed its checks, or whose answer failed
    /// its audit, gets no more requests.
    pub(crate) fn ban(&self, provider: Address, why: String) {
        self.stats().entry(provider).or_default().banned = Some(why);
    }

    pub fn standings(&self) -> Vec<Standing> {
        let now = Instant::now();
        self.stats()
            .iter()
            .map(|(provider, st)| Standing {
                provider: *provider,
                latency_ms: st.latency_ms,
                tokens_per_s: st.tokens_per_s,
                failures_in_a_row: st.failures_in_a_row,
                cooling: st.cooling_until.is_some_and(|t| t > now),
                banned: st.banned.clone(),
                audits_passed: st.audits_passed,
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A chat service of provider `0xpp..` at `out` neuron per token both ways.
    pub(crate) fn service(p: u8, out: u64) -> Service {
        Service {
            provider: Address::repeat_byte(p),
            name: "chat".into(),
            kind: "chat".into(),
            url: String::new(),
            model: "m".into(),
            model_digest: B256::ZERO,
            hardware: "cpu".into(),
            prices: Prices::new(U256::from(out), U256::from(out)),
            verifiability: "none".into(),
            signer: Address::ZERO,
            updated_at: 0,
            failed_at: 0,
        }
    }

    fn order(r: &Ranking) -> Vec<u8> {
        r.rank(
            vec![service(1, 100), service(2, 150)],
            &Quoted::new(),
            (100, 100),
            None,
        )
        .iter()
        .map(|s| s.provider.0[0])
        .collect()
    }

    #[test]
    fn cheaper_first_unless_latency_or_failures_say_otherwise() {
        let r = Ranking::new(RankingPolicy::default());
        assert_eq!(order(&r), vec![1, 2]);
        // 1 s slower doubles the cost: 100 * 2 > 150.
        r.success(Address::repeat_byte(1), Duration::from_millis(1000));
        r.success(Address::repeat_byte(2), Duration::from_millis(10));
        assert_eq!(order(&r), vec![2, 1]);
        let r = Ranking::new(RankingPolicy::default());
        r.failure(Address::repeat_byte(1));
        assert_eq!(order(&r), vec![2, 1]);
        r.success(Address::repeat_byte(1), Duration::from_millis(1));
        assert_eq!(order(&r), vec![1, 2]);
        r.ban(Address::repeat_byte(1), "lied".into());
        assert_eq!(order(&r), vec![2]);
    }

    #[test]
    fn a_passed_audit_wins_within_ten_percent_and_breaks_ties_of_a_sort() {
        let r = Ranking::new(RankingPolicy::default());
        let ranked = |a: u64, b: u64, sort| -> Vec<u8> {
            r.rank(
                vec![service(1, a), service(2, b)],
                &Quoted::new(),
                (100, 100),
                sort,
            )
            .iter()
            .map(|s| s.provider.0[0])
            .collect()
        };
        r.audit_passed(Address::repeat_byte(2));
        assert_eq!(ranked(100, 105, None), vec![2, 1], "5% dearer but audited");
        assert_eq!(ranked(100, 120, None), vec![1, 2], "20% dearer is too much");
        assert_eq!(ranked(100, 100, Some(Sort::Price)), vec![2, 1]);
        assert_eq!(ranked(100, 105, Some(Sort::Price)), vec![1, 2]);
        r.ban(Address::repeat_byte(2), "failed an audit".into());
        assert_eq!(ranked(100, 100, None), vec![1]);
    }

    #[test]
    fn a_request_can_sort_by_price_latency_or_throughput_alone() {
        let sorted = |r: &Ranking, sort| -> Vec<u8> {
            r.rank(
                vec![service(1, 100), service(2, 150)],
                &Quoted::new(),
                (100, 100),
                Some(sort),
            )
            .iter()
            .map(|s| s.provider.0[0])
            .collect()
        };
        let r = Ranking::new(RankingPolicy::default());
        r.success(Address::repeat_byte(1), Duration::from_millis(900));
        r.success(Address::repeat_byte(2), Duration::from_millis(100));
        r.throughput(Address::repeat_byte(1), 100, Duration::from_secs(1));
        r.throughput(Address::repeat_byte(2), 50, Duration::from_secs(1));
        assert_eq!(sorted(&r, Sort::Price), vec![1, 2]);
        assert_eq!(sorted(&r, Sort::Latency), vec![2, 1]);
        assert_eq!(sorted(&r, Sort::Throughput), vec![1, 2]);
    }

    #[test]
    fn a_quote_under_the_ceiling_ranks_at_the_quote() {
        let r = Ranking::new(RankingPolicy::default());
        let (a, b) = (service(1, 100), service(2, 150));
        let mut quoted = Quoted::new();
        let ranked = |quoted: &Quoted| -> Vec<u8> {
            r.rank(vec![a.clone(), b.clone()], quoted, (100, 100), None)
                .iter()
                .map(|s| s.provider.0[0])
                .collect()
        };
        assert_eq!(ranked(&quoted), vec![1, 2]);
        // Under load, provider 1 quotes its whole ceiling's 100; 2 quotes half of 150.
        quoted.insert(
            (b.provider, b.id()),
            Prices::new(U256::from(75u64), U256::from(75u64)),
        );
        assert_eq!(ranked(&quoted), vec![2, 1]);
    }
}
