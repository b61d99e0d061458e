//! The send job: the versioned contract between the api (publisher) and the worker.
//! It never carries the code itself, only which stored code to send.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::locale::Locale;
use crate::phone::PhoneNumber;

/// The job version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

/// One request to deliver the pending code of a phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendJob {
    /// Always [`JOB_VERSION`]; another value is a job this build cannot read.
    pub v: u32,
    /// Identifies this send (status, de-duplication).
    pub request_id: Uuid,
    /// The stored code this job is for; if the phone's code has changed, the job is dropped.
    pub code_id: Uuid,
    /// E.164 digits without `+`; a job with anything else is malformed.
    pub phone: PhoneNumber,
    /// When the api accepted the request, Unix milliseconds.
    pub accepted_at_ms: u64,
    /// The languages to send the code in, most wanted first (the app's `locale`, then
    /// the phone's country's); the worker takes the first it has a template for. Left
    /// out when empty, so a job without one reads the same to a worker of any version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locales: Vec<Locale>,
    /// How the code goes out: WhatsApp (left out) or SMS.
    #[serde(default, skip_serializing_if = "JobChannel::is_whatsapp")]
    pub channel: JobChannel,
    /// An SMS sent because WhatsApp could not deliver this request: its delivery is
    /// the request's second, kept apart from the first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

/// The channel a job's code goes out on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobChannel {
    #[default]
    Whatsapp,
    Sms,
}

impl JobChannel {
    pub const ALL: [JobChannel; 2] = [JobChannel::Whatsapp, JobChannel::Sms];

    fn is_whatsapp(&self) -> bool {
        *self == JobChannel::Whatsapp
    }

    /// A metric's `channel` label.
    pub fn label(self) -> &'static str {
        match self {
            JobChannel::Whatsapp => "whatsapp",
            JobChannel::Sms => "sms",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unknown job version {0}")]
    UnknownVersion(u32),
}

impl JobError {
    /// A short, stable reason for dead-letter headers and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Malformed(_) => "malformed job",
            JobError::UnknownVersion(_) => "unknown job version",
        }
    }
}

impl SendJob {
    pub fn new(request_id: Uuid, code_id: Uuid, phone: PhoneNumber, accepted_at_ms: u64) -> Self {
        Self {
            v: JOB_VERSION,
            request_id,
            code_id,
            phone,
            accepted_at_ms,
            locales: Vec::new(),
            channel: JobChannel::Whatsapp,
            fallback: false,
        }
    }

    /// The same request, to go out by SMS (`fallback`: after WhatsApp could not deliver
    /// it).
    pub fn by_sms(self, fallback: bool) -> Self {
        Self {
            channel: JobChannel::Sms,
            fallback,
            ..self
        }
    }

    /// The same job, to be sent in the first of `locales` the worker has a template for.
    pub fn in_locales(self, locales: Vec<Locale>) -> Self {
        Self { locales, ..self }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, JobError> {
        let job: SendJob = serde_json::from_slice(bytes)?;
        if job.v != JOB_VERSION {
            return Err(JobError::UnknownVersion(job.v));
        }
        Ok(job)
    }

    /// When the api accepted the job in `bytes`, also from a job this build cannot read
    /// whole (another version's, or one with fields it does not know); `None` for
    /// anything that is no job.
    pub fn accepted_at_ms_of(bytes: &[u8]) -> Option<u64> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Accepted {
            accepted_at_ms: u64,
        }
        serde_json::from_slice::<Accepted>(bytes)
            .ok()
            .map(|a| a.accepted_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> PhoneNumber {
        PhoneNumber::from_e164_digits("919876543210").expect("phone")
    }

    #[test]
    fn a_job_survives_the_round_trip() {
        let job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), 42);
        assert_eq!(SendJob::decode(&job.encode()).ok(), Some(job));
    }

    #[test]
    fn locales_travel_only_when_there_are_some() {
        let job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), 42);
        let plain = String::from_utf8(job.encode()).expect("utf-8");
        assert!(!plain.contains("locales"), "{plain}");
        let locales = vec![
            Locale::parse("pt_BR").expect("a locale"),
            Locale::parse("hi").expect("a locale"),
        ];
        let job = job.in_locales(locales.clone());
        let decoded = SendJob::decode(&job.encode()).expect("decodes");
        assert_eq!(decoded.locales, locales);
        let bad = String::from_utf8(job.encode())
            .expect("utf-8")
            .replace("pt_BR", "<script>");
        assert!(matches!(
            SendJob::decode(bad.as_bytes()),
            Err(JobError::Malformed(_))
        ));
    }

    #[test]
    fn a_whatsapp_job_reads_as_before_and_an_sms_job_says_so() {
        let job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), 42);
        let plain = String::from_utf8(job.encode()).expect("utf-8");
        assert!(
            !plain.contains("channel") && !plain.contains("fallback"),
            "{plain}"
        );
        let sms = job.by_sms(true);
        let text = String::from_utf8(sms.encode()).expect("utf-8");
        assert!(text.contains(r#""channel":"sms""#) && text.contains(r#""fallback":true"#));
        assert_eq!(SendJob::decode(sms.encode().as_slice()).ok(), Some(sms));
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), 0);
        job.v = 2;
        assert!(matches!(
            SendJob::decode(&job.encode()),
            Err(JobError::UnknownVersion(2))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            SendJob::decode(b"{not json"),
            Err(JobError::Malformed(_))
        ));
        assert!(matches!(
            SendJob::decode(br#"{"v":1}"#),
            Err(JobError::Malformed(_))
        ));
        let bad_phone = br#"{"v":1,"requestId":"6a1f5a4e-3c1b-4b8e-9d2a-0e5a7c9b1d2f","codeId":"6a1f5a4e-3c1b-4b8e-9d2a-0e5a7c9b1d2f","phone":"+91 98765","acceptedAtMs":0}"#;
        assert!(matches!(
            SendJob::decode(bad_phone),
            Err(JobError::Malformed(_))
        ));
    }

    #[test]
    fn the_acceptance_time_reads_from_a_job_of_any_version_and_from_nothing_else() {
        let job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), 42);
        assert_eq!(SendJob::accepted_at_ms_of(&job.encode()), Some(42));
        let newer = br#"{"v":2,"acceptedAtMs":7,"somethingNew":true}"#;
        assert!(SendJob::decode(newer).is_err());
        assert_eq!(SendJob::accepted_at_ms_of(newer), Some(7));
        assert_eq!(SendJob::accepted_at_ms_of(b"not a job"), None);
    }

    /// The fallback timers keep jobs one to a line (`set_timers.lua`).
    #[test]
    fn a_job_encodes_on_one_line() {
        let locales = ["en", "pt_BR"]
            .iter()
            .map(|l| Locale::parse(l).expect("locale"))
            .collect();
        let job = SendJob::new(Uuid::new_v4(), Uuid::new_v4(), phone(), u64::MAX)
            .in_locales(locales)
            .by_sms(true);
        let encoded = job.encode();
        assert!(
            !encoded.contains(&b'\n'),
            "{}",
            String::from_utf8_lossy(&encoded)
        );
        assert_eq!(SendJob::decode(&encoded).ok(), Some(job));
    }
}
