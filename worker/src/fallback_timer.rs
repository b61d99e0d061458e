//! Sets the fallback timers of the WhatsApp sends WATI accepted, many in one message: the
//! sends of one WATI call are recorded at about the same moment, and each waits for its
//! timer to be confirmed before its job is acked. One task publishes: the sends that
//! ask while a publish is out wait for it and go together in the next message (a group
//! commit), so a quiet worker still sets a lone timer at once, and a busy one sets up to
//! [`SENDS_PER_MESSAGE`] with one persistent, confirmed message instead of one each.
//! The message waits in RabbitMQ as one send's timer did, so it survives any worker's
//! restart; its check looks at each send apart ([`crate::fallback_check`]).

use std::sync::Arc;
use std::time::Duration;

use otp_shared::job::{SendJob, TimerBatch};
use otp_shared::publisher::{PublishError, Publisher};
use tokio::sync::{mpsc, oneshot};

/// Most sends in one timer message (about 200 bytes each).
pub const SENDS_PER_MESSAGE: usize = 256;

/// Why a timer was not set.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TimerError {
    /// The message that carried it was not confirmed.
    #[error("{0}")]
    Publish(Arc<PublishError>),
    /// The publishing task is gone (only a panic ends it while senders remain).
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
    /// Starts the task that publishes timers through `publisher`, each running out
    /// `after` its message is published.
    pub fn start(publisher: Arc<Publisher>, after: Duration) -> Self {
        let (queue, asked) = mpsc::unbounded_channel();
        tokio::spawn(run(asked, move |batch: TimerBatch| {
            let publisher = publisher.clone();
            async move { publisher.publish_timers(&batch, after).await }
        }));
        Self { queue }
    }

    /// Sets the timer of `job`: returns once the broker has confirmed the message that
    /// carries it.
    pub async fn set(&self, job: SendJob) -> Result<(), TimerError> {
        let (set, answer) = oneshot::channel();
        self.queue
            .send(Asked { job, set })
            .map_err(|_| TimerError::Stopped)?;
        answer.await.unwrap_or(Err(TimerError::Stopped))
    }
}

/// Publishes what is asked, as many sends per message as have asked since the last
/// publish (up to [`SENDS_PER_MESSAGE`]), until every sender is gone.
async fn run<P, F>(mut asked: mpsc::UnboundedReceiver<Asked>, publish: P)
where
    P: Fn(TimerBatch) -> F,
    F: std::future::Future<Output = Result<(), PublishError>>,
{
    let mut waiting = Vec::with_capacity(SENDS_PER_MESSAGE);
    while asked.recv_many(&mut waiting, SENDS_PER_MESSAGE).await > 0 {
        let batch = TimerBatch::new(waiting.iter().map(|a| a.job.clone()).collect());
        let result = publish(batch)
            .await
            .map_err(|e| TimerError::Publish(Arc::new(e)));
        for asked in waiting.drain(..) {
            // The send may have stopped waiting (its task was dropped): nothing to tell.
            let _ = asked.set.send(result.clone());
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

    /// A timer task whose publish records each message and waits for `gate`.
    fn recording(
        gate: Arc<tokio::sync::Semaphore>,
        fail: bool,
    ) -> (Timers, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (queue, asked) = mpsc::unbounded_channel();
        let seen = sizes.clone();
        tokio::spawn(run(asked, move |batch: TimerBatch| {
            let (gate, seen) = (gate.clone(), seen.clone());
            async move {
                seen.lock().expect("lock").push(batch.sends.len());
                let _permit = gate.acquire().await.expect("gate");
                if fail {
                    Err(PublishError::Refused)
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
    async fn sends_that_ask_while_a_message_is_out_go_together_in_the_next() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (timers, sizes) = recording(gate.clone(), false);
        let set = |timers: &Timers| {
            let timers = timers.clone();
            tokio::spawn(async move { timers.set(job()).await })
        };
        let first = set(&timers);
        settle().await;
        // A lone send goes at once, alone; its message is held at the gate.
        assert_eq!(*sizes.lock().expect("lock"), vec![1]);
        let rest: Vec<_> = (0..300).map(|_| set(&timers)).collect();
        settle().await;
        assert!(
            !first.is_finished(),
            "answered before its message was confirmed"
        );
        gate.add_permits(10);
        assert!(first.await.expect("task").is_ok());
        for r in rest {
            assert!(r.await.expect("task").is_ok());
        }
        assert_eq!(*sizes.lock().expect("lock"), vec![1, SENDS_PER_MESSAGE, 44]);
    }

    #[tokio::test]
    async fn a_message_that_is_not_confirmed_fails_each_of_its_sends() {
        let gate = Arc::new(tokio::sync::Semaphore::new(10));
        let (timers, _) = recording(gate, true);
        let result = timers.set(job()).await;
        assert!(matches!(result, Err(TimerError::Publish(_))), "{result:?}");
    }
}
