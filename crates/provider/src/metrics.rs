//! Prometheus metrics in the text format, kept in atomics (no registry
//! crate): requests, errors by code, tokens, fees, upstream latency,
//! settlement results; unsettled value is read from the store at scrape time.
//! Besides, per broker, [`Traffic`]: paid requests and tokens per minute and
//! service over the last hour, for the provider page.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use zg_core::{ErrorCode, U256};

/// Upper bounds of the upstream latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

#[derive(Default)]
pub(crate) struct Metrics {
    requests: [AtomicU64; KIND_NAMES.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    fees: Mutex<U256>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    settlements_ok: AtomicU64,
    settlements_failed: AtomicU64,
    vouchers_settled: AtomicU64,
    vouchers_rejected: AtomicU64,
    fee_capped: AtomicU64,
    resubmits: [AtomicU64; RESUBMIT_REASONS.len()],
    refunds_at_risk: AtomicU64,
    refunds_missed: AtomicU64,
}

/// Why a settlement went out again (`zg_provider_settlement_resubmits_total`).
const RESUBMIT_REASONS: [&str; 3] = ["stuck", "reorg", "nonce_taken"];

/// The kinds of paid request, for the `requests` counter.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Chat = 0,
    ChatStream = 1,
    Embeddings = 2,
    Completions = 3,
    CompletionsStream = 4,
}

const KIND_NAMES: [&str; 5] = [
    "chat",
    "chat_stream",
    "embeddings",
    "completions",
    "completions_stream",
];

/// The process's metrics (one broker per process in production; tests that
/// run several only ever assert increases).
pub(crate) fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    pub(crate) fn request(&self, kind: Kind) {
        self.requests[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn charged(&self, input: u64, output: u64, fee: U256) {
        self.input_tokens.fetch_add(input, Relaxed);
        self.output_tokens.fetch_add(output, Relaxed);
        let mut fees = self.fees.lock().unwrap_or_else(|e| e.into_inner());
        *fees = fees.saturating_add(fee);
    }

    pub(crate) fn upstream_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    pub(crate) fn settlement(&self, ok: bool, settled: usize, rejected: usize) {
        if ok {
            self.settlements_ok.fetch_add(1, Relaxed);
        } else {
            self.settlements_failed.fetch_add(1, Relaxed);
        }
        self.vouchers_settled.fetch_add(settled as u64, Relaxed);
        self.vouchers_rejected.fetch_add(rejected as u64, Relaxed);
    }

    /// A settlement waited because the chain's gas price was above the cap.
    pub(crate) fn fee_capped(&self) {
        self.fee_capped.fetch_add(1, Relaxed);
    }

    /// A settlement went out again: `reason` is one of [`RESUBMIT_REASONS`].
    pub(crate) fn resubmitted(&self, reason: &str) {
        if let Some(i) = RESUBMIT_REASONS.iter().position(|r| *r == reason) {
            self.resubmits[i].fetch_add(1, Relaxed);
        }
    }

    /// A refund came within the margin of its unlock while settlement failed.
    pub(crate) fn refund_at_risk(&self) {
        self.refunds_at_risk.fetch_add(1, Relaxed);
    }

    /// A refund unlocked while settlement failed, with value of its user unsettled.
    pub(crate) fn refund_missed(&self) {
        self.refunds_missed.fetch_add(1, Relaxed);
    }

    /// Error answers so far, by code, the codes never answered left out.
    pub(crate) fn errors(&self) -> Vec<(ErrorCode, u64)> {
        ErrorCode::ALL
            .iter()
            .zip(&self.errors)
            .map(|(code, n)| (*code, n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The text exposition; `unsettled` and `owed` come from the store.
    pub(crate) fn render(&self, unsettled: U256, owed: U256) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP zg_provider_requests_total Paid requests admitted, by kind."
        );
        let _ = writeln!(out, "# TYPE zg_provider_requests_total counter");
        for (i, name) in KIND_NAMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "zg_provider_requests_total{{kind=\"{name}\"}} {}",
                self.requests[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP zg_provider_errors_total Error answers, by code."
        );
        let _ = writeln!(out, "# TYPE zg_provider_errors_total counter");
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "zg_provider_errors_total{{code=\"{code}\"}} {}",
                self.errors[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP zg_provider_tokens_total Tokens charged, by direction."
        );
        let _ = writeln!(out, "# TYPE zg_provider_tokens_total counter");
        let _ = writeln!(
            out,
            "zg_provider_tokens_total{{direction=\"input\"}} {}",
            self.input_tokens.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "zg_provider_tokens_total{{direction=\"output\"}} {}",
            self.output_tokens.load(Relaxed)
        );
        let fees = *self.fees.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP zg_provider_fees_neuron_total Fees charged by this process, in neuron."
        );
        let _ = writeln!(out, "# TYPE zg_provider_fees_neuron_total counter");
        let _ = writeln!(out, "zg_provider_fees_neuron_total {fees}");
        let _ = writeln!(
            out,
            "# HELP zg_provider_unsettled_neuron Value of the newest vouchers not yet settled on chain."
        );
        let _ = writeln!(out, "# TYPE zg_provider_unsettled_neuron gauge");
        let _ = writeln!(out, "zg_provider_unsettled_neuron {unsettled}");
        let _ = writeln!(
            out,
            "# HELP zg_provider_owed_neuron Everything users owe, settled or not."
        );
        let _ = writeln!(out, "# TYPE zg_provider_owed_neuron gauge");
        let _ = writeln!(out, "zg_provider_owed_neuron {owed}");
        let _ = writeln!(
            out,
            "# HELP zg_provider_settlements_total Settle transactions, by result."
        );
        let _ = writeln!(out, "# TYPE zg_provider_settlements_total counter");
        let _ = writeln!(
            out,
            "zg_provider_settlements_total{{result=\"ok\"}} {}",
            self.settlements_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "zg_provider_settlements_total{{result=\"failed\"}} {}",
            self.settlements_failed.load(Relaxed)
        );
        let _ = writeln!(out, "# TYPE zg_provider_vouchers_settled_total counter");
        let _ = writeln!(
            out,
            "zg_provider_vouchers_settled_total {}",
            self.vouchers_settled.load(Relaxed)
        );
        let _ = writeln!(out, "# TYPE zg_provider_vouchers_rejected_total counter");
        let _ = writeln!(
            out,
            "zg_provider_vouchers_rejected_total {}",
            self.vouchers_rejected.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zg_provider_settlement_fee_capped_total Times a settlement waited because the chain's gas price was above settlement.max_fee_gwei."
        );
        let _ = writeln!(
            out,
            "# TYPE zg_provider_settlement_fee_capped_total counter"
        );
        let _ = writeln!(
            out,
            "zg_provider_settlement_fee_capped_total {}",
            self.fee_capped.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zg_provider_settlement_resubmits_total Settlements sent again: not mined in time (stuck), removed by a reorg, or their nonce taken by another transaction."
        );
        let _ = writeln!(out, "# TYPE zg_provider_settlement_resubmits_total counter");
        for (i, reason) in RESUBMIT_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "zg_provider_settlement_resubmits_total{{reason=\"{reason}\"}} {}",
                self.resubmits[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP zg_provider_refunds_at_risk_total Refunds that came within settlement.refund_margin_secs of their unlock while settlement was failing."
        );
        let _ = writeln!(out, "# TYPE zg_provider_refunds_at_risk_total counter");
        let _ = writeln!(
            out,
            "zg_provider_refunds_at_risk_total {}",
            self.refunds_at_risk.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zg_provider_refunds_unlocked_unsettled_total Refunds that unlocked while settlement was failing, with value of their user not yet settled."
        );
        let _ = writeln!(
            out,
            "# TYPE zg_provider_refunds_unlocked_unsettled_total counter"
        );
        let _ = writeln!(
            out,
            "zg_provider_refunds_unlocked_unsettled_total {}",
            self.refunds_missed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zg_provider_upstream_seconds Upstream latency to the answer's headers."
        );
        let _ = writeln!(out, "# TYPE zg_provider_upstream_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "zg_provider_upstream_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "zg_provider_upstream_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "zg_provider_upstream_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "zg_provider_upstream_seconds_count {count}");
        out
    }
}

/// Minutes of traffic kept (the provider page's chart spans them).
const TRAFFIC_MINUTES: usize = 60;

/// Paid answers and their tokens (input and output) in some span of time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) requests: u64,
    pub(crate) tokens: u64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.requests = self.requests.saturating_add(other.requests);
        self.tokens = self.tokens.saturating_add(other.tokens);
    }
}

/// One minute of traffic, by service.
struct Minute {
    /// Unix time of the minute's first second.
    start: i64,
    by_service: BTreeMap<String, Count>,
}

/// A broker's paid answers per minute and service over the last hour, in
/// memory (a restart starts it empty): a ring of minutes, the oldest
/// dropped as a new one begins.
#[derive(Default)]
pub(crate) struct Traffic {
    minutes: Mutex<VecDeque<Minute>>,
}

impl Traffic {
    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Minute>> {
        self.minutes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A paid answer of `service` with `tokens` tokens, at unix time `now`.
    pub(crate) fn record(&self, service: &str, tokens: u64, now: i64) {
        let start = now - now.rem_euclid(60);
        let mut ring = self.ring();
        if ring.back().is_none_or(|m| m.start < start) {
            ring.push_back(Minute {
                start,
                by_service: BTreeMap::new(),
            });
            while ring.len() > TRAFFIC_MINUTES {
                ring.pop_front();
            }
        }
        // A clock that went back counts into the newest minute.
        if let Some(minute) = ring.back_mut() {
            let count = minute.by_service.entry(service.to_owned()).or_default();
            count.add(Count {
                requests: 1,
                tokens,
            });
        }
    }

    /// `service`'s traffic over the 60 seconds before `now`: the minute under
    /// way, plus the share of the minute before that the window still covers.
    pub(crate) fn per_minute(&self, service: &str, now: i64) -> Count {
        let start = now - now.rem_euclid(60);
        let into = u64::try_from(now - start).unwrap_or(0);
        let ring = self.ring();
        let of = |minute: i64| {
            ring.iter()
                .find(|m| m.start == minute)
                .and_then(|m| m.by_service.get(service).copied())
                .unwrap_or_default()
        };
        let (current, previous) = (of(start), of(start - 60));
        let share = |n: u64| n.saturating_mul(60 - into) / 60;
        Count {
            requests: current.requests.saturating_add(share(previous.requests)),
            tokens: current.tokens.saturating_add(share(previous.tokens)),
        }
    }

    /// Every service's traffic per minute over the last hour up to `now`,
    /// oldest first, a quiet minute as zero, from the quiet minute before
    /// the first answer (so even one minute of traffic draws a line; empty
    /// before the first answer).
    pub(crate) fn history(&self, now: i64) -> Vec<(i64, Count)> {
        let ring = self.ring();
        let last = now - now.rem_euclid(60);
        let first = (last - 60 * (TRAFFIC_MINUTES as i64 - 1)).max(match ring.front() {
            Some(m) => m.start - 60,
            None => return Vec::new(),
        });
        (0..)
            .map(|i| first + 60 * i)
            .take_while(|start| *start <= last)
            .map(|start| {
                let mut total = Count::default();
                if let Some(m) = ring.iter().find(|m| m.start == start) {
                    m.by_service.values().for_each(|c| total.add(*c));
                }
                (start, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_counts_per_minute_and_slides() {
        let t = Traffic::default();
        assert!(t.history(6_000).is_empty());
        t.record("a", 10, 6_000);
        t.record("a", 5, 6_030);
        t.record("b", 1, 6_030);
        let now = 6_059;
        assert_eq!(
            t.per_minute("a", now),
            Count {
                requests: 2,
                tokens: 15
            }
        );
        // 30 s into the next minute, half of the last one still counts.
        t.record("a", 4, 6_090);
        assert_eq!(
            t.per_minute("a", 6_090),
            Count {
                requests: 2,
                tokens: 11
            }
        );
        let h = t.history(6_200);
        assert_eq!(h.len(), 5);
        assert_eq!(h[0], (5_940, Count::default()));
        assert_eq!(
            h[1],
            (
                6_000,
                Count {
                    requests: 3,
                    tokens: 16
                }
            )
        );
        assert_eq!(h[3].1, Count::default());
        // An hour later the ring holds at most an hour.
        for m in 0..100 {
            t.record("a", 1, 10_000 + 60 * m);
        }
        assert_eq!(t.history(10_000 + 60 * 99).len(), TRAFFIC_MINUTES);
    }
}
