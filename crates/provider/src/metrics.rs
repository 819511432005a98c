//! Prometheus metrics in the text format, kept in atomics (no registry
//! crate): requests, errors by code, tokens, fees, upstream latency,
//! settlement results; unsettled value is read from the store at scrape time.

use std::{
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
