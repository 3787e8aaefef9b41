//! What a task kind is: its handler, its retry policy and its recovery strategy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::context::TaskContext;
use crate::task::Task;

/// The boxed error inside a [`HandlerError`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error a handler returns: its text, with the chain of its sources joined by `": "`, is
/// recorded as the task's `last_error` and the retry policy decides what follows.
///
/// `?` converts into it from [`crate::Error`] (so context calls need no `map_err`), from any
/// `std::error::Error + Send + Sync + 'static`, and from `String` and `&str`:
///
/// ```
/// use tasklog::runtime::{HandlerError, TaskContext};
/// use serde_json::{json, Value};
///
/// fn resize(ctx: &TaskContext, input: Value) -> Result<Value, HandlerError> {
///     ctx.progress(10, Some("load"), None)?; // tasklog::Error
///     let n: u32 = input["n"].to_string().parse()?; // ParseIntError
///     if n == 0 {
///         return Err("n must be positive".into()); // &str
///     }
///     Ok(json!({ "resized": n }))
/// }
/// # let _ = resize;
/// ```
///
// NOTE: deliberately not `std::error::Error` itself (like `anyhow::Error`): that is what lets
// the blanket `From` below coexist with `From<T> for T`.
pub struct HandlerError(BoxError);

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.into())
    }
}

impl HandlerError {
    /// An error with this message.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        HandlerError(message.to_string().into())
    }
    /// The error the handler returned.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
    /// Gives back the error the handler returned.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl std::fmt::Display for HandlerError {
    /// The error and its sources, outermost first, joined by `": "`, skipping a source whose
    /// text its parent already shows (many errors print their source themselves).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            next = e.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

/// Runs tasks of one kind. Closures `Fn(&TaskContext, Value) -> Result<Value, HandlerError>`
/// are handlers; implement it on a type for handlers that carry state or settings.
pub trait Handler: Send + Sync {
    /// Does the work. A returned value completes the task with it as the result.
    fn run(&self, ctx: &TaskContext, input: Value) -> Result<Value, HandlerError>;
}

impl<F, E> Handler for F
where
    F: Fn(&TaskContext, Value) -> Result<Value, E> + Send + Sync,
    E: Into<HandlerError>,
{
    fn run(&self, ctx: &TaskContext, input: Value) -> Result<Value, HandlerError> {
        self(ctx, input).map_err(Into::into)
    }
}

/// Checks, after a crash, whether an interrupted task's work is in fact done. `Some(result)`
/// completes the task with that result; `None` means the work must run again.
pub type Validator = Arc<dyn Fn(&Task) -> Option<Value> + Send + Sync>;

/// What to do with a task of this kind whose worker died (a crash, or an expired lease).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// Use the store's interrupted-task policy (the default).
    #[default]
    StoreDefault,
    /// Run it again, handing the handler its last checkpoint.
    Resume,
    /// Run it again from scratch (the checkpoint is not offered).
    Restart,
    /// When progress reached `threshold`, ask `validate` whether the work is done and complete
    /// the task if so; otherwise resume it.
    ValidateOnly {
        /// Progress (0 to 100) from which validation is tried.
        threshold: u8,
        /// The check.
        validate: Validator,
    },
    /// Mark it failed.
    MarkFailed,
    /// Choose by how far the task got (seed 003): above `validate_above` percent, validate
    /// only (complete it when `validate` says the work is done); above `resume_above` with a
    /// checkpoint, resume from the checkpoint; otherwise a clean restart (the checkpoint is
    /// not offered). The choice and its reason are recorded in the task's history.
    Auto(AutoRecovery),
}

/// The thresholds of [`Recovery::Auto`].
///
/// ## Defaults
/// - `resume_above`: 25 (percent): resume from the checkpoint above it.
/// - `validate_above`: 95 (percent): validate only above it.
/// - `validate`: none (then nearly finished work resumes from its checkpoint, or restarts).
#[derive(Clone)]
#[non_exhaustive]
pub struct AutoRecovery {
    /// Progress above which a task with a checkpoint resumes from it.
    pub resume_above: u8,
    /// Progress above which the work is validated instead of run again.
    pub validate_above: u8,
    /// The check of nearly finished work: `Some(result)` completes the task.
    pub validate: Option<Validator>,
}

impl Default for AutoRecovery {
    fn default() -> Self {
        AutoRecovery {
            resume_above: 25,
            validate_above: 95,
            validate: None,
        }
    }
}

impl AutoRecovery {
    /// Sets the resume threshold (percent).
    #[must_use]
    pub fn resume_above(mut self, percent: u8) -> Self {
        self.resume_above = percent;
        self
    }
    /// Sets the validation threshold (percent).
    #[must_use]
    pub fn validate_above(mut self, percent: u8) -> Self {
        self.validate_above = percent;
        self
    }
    /// Sets the validator.
    #[must_use]
    pub fn validate(mut self, v: impl Fn(&Task) -> Option<Value> + Send + Sync + 'static) -> Self {
        self.validate = Some(Arc::new(v));
        self
    }
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Recovery {
    /// A short name for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Recovery::StoreDefault => "store_default",
            Recovery::Resume => "resume",
            Recovery::Restart => "restart",
            Recovery::ValidateOnly { .. } => "validate_only",
            Recovery::MarkFailed => "mark_failed",
            Recovery::Auto(_) => "auto",
        }
    }
    /// [`Recovery::Auto`] with seed 003's thresholds (25 % and 95 %) and no validator.
    pub fn auto() -> Self {
        Recovery::Auto(AutoRecovery::default())
    }
}

/// When a failed task is tried again.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each time.
    pub backoff_base_ms: u64,
    /// Upper bound of the delay.
    pub backoff_max_ms: u64,
    /// Random spread, 0.0 to 1.0, applied to each delay (avoids retry storms).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Three attempts, 100 ms doubling up to 10 s, 20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay_ms(&self, next_attempt: u32) -> u64 {
        let exp = next_attempt.saturating_sub(2).min(32);
        let base = self
            .backoff_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_ms);
        let spread = (base as f64 * self.jitter.clamp(0.0, 1.0)) as u64;
        if spread == 0 {
            base
        } else {
            base - spread / 2 + fastrand::u64(0..=spread)
        }
    }
}

/// A registered kind.
#[derive(Clone)]
pub struct Kind {
    /// Runs the tasks.
    pub handler: Arc<dyn Handler>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Crash recovery.
    pub recovery: Recovery,
    /// Start-to-close limit of one attempt (`None`: no limit). A task's own
    /// `runtime.timeout_ms` metadata overrides it.
    pub timeout: Option<Duration>,
    /// How long a handler that was told to stop (timed out) may take to return before the
    /// runtime abandons it: its attempt is failed without it and its claim fenced off.
    pub abandon_after: Duration,
    /// Ask the handler for a checkpoint each time its progress crosses a multiple of this many
    /// percent (`TaskContext::checkpoint_due`); `None`: never asked.
    pub checkpoint_every_percent: Option<u8>,
}

/// How long a timed-out handler may take to notice cancellation, when the kind sets none.
pub const ABANDON_AFTER_DEFAULT: Duration = Duration::from_secs(5);

impl Kind {
    /// A kind run by a closure, with the default retry policy and recovery. The closure's
    /// argument types are inferred:
    ///
    /// ```
    /// use tasklog::runtime::Kind;
    /// use serde_json::json;
    ///
    /// let kind = Kind::new(|ctx, input| {
    ///     ctx.progress(50, Some("half way"), None)?;
    ///     Ok(json!({ "echo": input }))
    /// });
    /// # let _ = kind;
    /// ```
    pub fn new<F>(handler: F) -> Self
    where
        F: Fn(&TaskContext, Value) -> Result<Value, HandlerError> + Send + Sync + 'static,
    {
        Kind::from_handler(handler)
    }
    /// A kind run by any [`Handler`] (a type of yours, or a closure whose error type is one
    /// that converts into [`HandlerError`], such as `String`).
    pub fn from_handler(handler: impl Handler + 'static) -> Self {
        Kind {
            handler: Arc::new(handler),
            retry: RetryPolicy::default(),
            recovery: Recovery::default(),
            timeout: None,
            abandon_after: ABANDON_AFTER_DEFAULT,
            checkpoint_every_percent: None,
        }
    }
    /// Asks the handler for a checkpoint each time its reported progress crosses a multiple of
    /// `n` percent (1 to 100): `TaskContext::checkpoint_due` turns true until it takes one.
    #[must_use]
    pub fn checkpoint_every_percent(mut self, n: u8) -> Self {
        self.checkpoint_every_percent = Some(n.clamp(1, 100));
        self
    }
    /// Limits each attempt to `timeout` from its start: past it the handler is told to stop
    /// (`TaskContext::is_cancelled` and `is_timed_out` turn true), the attempt fails with a
    /// timed-out error and the retry policy decides what follows.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Sets how long a timed-out handler may run on before it is abandoned (default 5 s).
    #[must_use]
    pub fn abandon_after(mut self, grace: Duration) -> Self {
        self.abandon_after = grace;
        self
    }
    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
    /// Sets the recovery strategy.
    #[must_use]
    pub fn recovery(mut self, r: Recovery) -> Self {
        self.recovery = r;
        self
    }
}
