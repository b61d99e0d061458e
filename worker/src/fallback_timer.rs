//! Sets the fallback timers of the WhatsApp sends WATI accepted, many in one Redis call:
//! the sends of one WATI call are recorded at about the same moment, and each waits for
//! its timer to be set (or to fail) before its job is acked. One task sets them: the sends that ask
//! while a call is out wait for it and go together in the next (a group commit), so a
//! quiet worker still sets a lone timer at once, and a busy one sets up to
//! [`SENDS_PER_CALL`] in one call. The timers live in Redis, not in the worker, so they
//! survive its restart; any worker checks them when they run out
//! ([`crate::fallback_check`]).

use std::sync::Arc;
use std::time::Duration;

use otp_shared::job::SendJob;
use otp_shared::redis::fallback_timers::FallbackTimers;
use tokio::sync::{mpsc, oneshot};

/// Most sends whose timers are set in one call (about 200 bytes each).
pub const SENDS_PER_CALL: usize = 256;

/// Why a timer was not set.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TimerError {
    /// The call that carried it failed.
    #[error("{0}")]
    Redis(Arc<redis::RedisError>),
    /// The task that sets them is gone (only a panic ends it while senders remain).
    #[error("the timer task stopped")]
    Stopped,
}

/// One send waiting for its timer to be set.
struct Asked {
    job: SendJob,
    set: oneshot::Sender<Result<(), TimerError>>,
}

/// Hands sends to the task that sets their timers. Cheap to clone; the task ends when
/// the last clone is dropped, after answering every send handed to it.
#[derive(Clone)]
pub struct Timers {
    queue: mpsc::UnboundedSender<Asked>,
}

impl Timers {
    /// Starts the task that sets timers in `timers`, each running out `after` it is set.
    pub fn start(timers: FallbackTimers, after: Duration) -> Self {
        let (queue, asked) = mpsc::unbounded_channel();
        tokio::spawn(run(asked, move |sends: Vec<SendJob>| {
            let timers = timers.clone();
            async move { timers.set(&sends, after).await }
        }));
        Self { queue }
    }

    /// Sets the timer of `job`: returns once Redis holds it.
    pub async fn set(&self, job: SendJob) -> Result<(), TimerError> {
        let (set, answer) = oneshot::channel();
        self.queue
            .send(Asked { job, set })
            .map_err(|_| TimerError::Stopped)?;
        answer.await.unwrap_or(Err(TimerError::Stopped))
    }
}

/// Sets what is asked, as many sends per call as have asked since the last call (up to
/// [`SENDS_PER_CALL`]), until every sender is gone.
async fn run<S, F>(mut asked: mpsc::UnboundedReceiver<Asked>, set: S)
where
    S: Fn(Vec<SendJob>) -> F,
    F: std::future::Future<Output = redis::RedisResult<()>>,
{
    let mut waiting = Vec::with_capacity(SENDS_PER_CALL);
    while asked.recv_many(&mut waiting, SENDS_PER_CALL).await > 0 {
        let (sends, answers): (Vec<SendJob>, Vec<_>) =
            waiting.drain(..).map(|a| (a.job, a.set)).unzip();
        let result = set(sends).await.map_err(|e| TimerError::Redis(Arc::new(e)));
        for answer in answers {
            // The send may have stopped waiting (its task was dropped): nothing to tell.
            let _ = answer.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_shared::phone::PhoneNumber;
    use std::sync::Mutex;
    use uuid::Uuid;

    fn job() -> SendJob {
        let phone = PhoneNumber::from_e164_digits("447911123456").expect("phone");
        SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone, 0)
    }

    /// A timer task whose set records each call's size and waits for `gate`.
    fn recording(
        gate: Arc<tokio::sync::Semaphore>,
        fail: bool,
    ) -> (Timers, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (queue, asked) = mpsc::unbounded_channel();
        let seen = sizes.clone();
        tokio::spawn(run(asked, move |sends: Vec<SendJob>| {
            let (gate, seen) = (gate.clone(), seen.clone());
            async move {
                seen.lock().expect("lock").push(sends.len());
                let _permit = gate.acquire().await.expect("gate");
                if fail {
                    Err(redis::RedisError::from((redis::ErrorKind::Io, "refused")))
                } else {
                    Ok(())
                }
            }
        }));
        (Timers { queue }, sizes)
    }

    /// Lets every other task run until it waits (the clock is paused: it moves only
    /// when nothing else can run).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn sends_that_ask_while_a_call_is_out_go_together_in_the_next() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (timers, sizes) = recording(gate.clone(), false);
        let set = |timers: &Timers| {
            let timers = timers.clone();
            tokio::spawn(async move { timers.set(job()).await })
        };
        let first = set(&timers);
        settle().await;
        // A lone send goes at once, alone; its call is held at the gate.
        assert_eq!(*sizes.lock().expect("lock"), vec![1]);
        let rest: Vec<_> = (0..300).map(|_| set(&timers)).collect();
        settle().await;
        assert!(
            !first.is_finished(),
            "answered before its call was answered"
        );
        gate.add_permits(10);
        assert!(first.await.expect("task").is_ok());
        for r in rest {
            assert!(r.await.expect("task").is_ok());
        }
        assert_eq!(*sizes.lock().expect("lock"), vec![1, SENDS_PER_CALL, 44]);
    }

    #[tokio::test]
    async fn a_call_that_fails_fails_each_of_its_sends() {
        let gate = Arc::new(tokio::sync::Semaphore::new(10));
        let (timers, _) = recording(gate, true);
        let result = timers.set(job()).await;
        assert!(matches!(result, Err(TimerError::Redis(_))), "{result:?}");
    }
}
