//! The template check: whether every configured template can carry a code on this WATI
//! tenant (listed, APPROVED, with a parameter named `WATI_TEMPLATE_PARAM`), before the
//! worker takes traffic and now and then after (Meta pauses and disables templates).
//! The verdicts are pure functions of the list; around them, the gate at start, the
//! periodic check with its metrics, and the report `worker check-wati` prints.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Preflight, WatiConfig};
use crate::templates::{Configured, Templates};
use crate::wati::WatiClient;
use crate::wati::listing::{ListError, ListedTemplate};

/// The status a template must have to be sent.
const APPROVED: &str = "APPROVED";
/// The category Meta takes one-time codes in.
const AUTHENTICATION: &str = "AUTHENTICATION";
/// Waits between tries while WATI cannot list the templates at start.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// Why a template cannot carry the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No template of that name is listed.
    Missing,
    /// Listed, but not approved (pending, rejected, paused, disabled).
    NotApproved { status: Option<String> },
    /// Approved, but without the parameter the worker fills.
    NoParam { param: String, has: Vec<String> },
    /// It has parameters the worker does not fill: every send in it fails.
    OtherParams { params: Vec<String> },
}

/// What may go wrong with a template that can carry the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Meta takes codes only in AUTHENTICATION templates; others are refused or
    /// re-categorised.
    NotAuthentication { category: Option<String> },
    /// A language maps to it, but it is in another language.
    OtherLanguage { locale: String, language: String },
}

/// What was found for one configured template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub template: Configured,
    /// The sending number whose list it was judged in, when the pool names numbers.
    pub channel: Option<String>,
    /// The listed entry the verdict is about, if there is one.
    pub listed: Option<ListedTemplate>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
}

impl Finding {
    pub fn usable(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => f.write_str("not in WATI's template list"),
            Problem::NotApproved { status } => write!(
                f,
                "not APPROVED (status {})",
                status.as_deref().unwrap_or("unknown")
            ),
            Problem::NoParam { param, has } if has.is_empty() => {
                write!(f, "has no parameter named {param:?} (it has none)")
            }
            Problem::NoParam { param, has } => write!(
                f,
                "has no parameter named {param:?} (it has {}); set WATI_TEMPLATE_PARAM",
                quoted(has)
            ),
            Problem::OtherParams { params } => write!(
                f,
                "has parameters the worker does not fill ({}): WATI refuses or Meta fails every send in it",
                quoted(params)
            ),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::NotAuthentication { category } => write!(
                f,
                "its category is {}, not AUTHENTICATION: Meta refuses or re-categorises codes in other templates",
                category.as_deref().unwrap_or("unknown")
            ),
            Warning::OtherLanguage { locale, language } => {
                write!(f, "it is in {language}, but {locale} codes go out in it")
            }
        }
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict on each configured template, from WATI's list.
pub fn check(templates: &Templates, listed: &[ListedTemplate]) -> Vec<Finding> {
    templates
        .configured()
        .into_iter()
        .map(|template| judge(template, templates.param(), listed))
        .collect()
}

fn judge(template: Configured, param: &str, listed: &[ListedTemplate]) -> Finding {
    let same_name: Vec<&ListedTemplate> =
        listed.iter().filter(|t| t.name == *template.name).collect();
    // A name may be listed more than once (a language each): judge the best entry.
    let verdicts = same_name.iter().map(|entry| {
        let problems = problems_of(entry, param);
        let warnings = warnings_of(entry, &template);
        (*entry, problems, warnings)
    });
    let best = verdicts.min_by_key(|(_, problems, warnings)| (problems.len(), warnings.len()));
    match best {
        Some((entry, problems, warnings)) => Finding {
            template,
            channel: None,
            listed: Some(entry.clone()),
            problems,
            warnings,
        },
        None => Finding {
            template,
            channel: None,
            listed: None,
            problems: vec![Problem::Missing],
            warnings: Vec::new(),
        },
    }
}

fn problems_of(entry: &ListedTemplate, param: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !entry
        .status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case(APPROVED))
    {
        problems.push(Problem::NotApproved {
            status: entry.status.clone(),
        });
    }
    let others: Vec<String> = entry
        .params
        .iter()
        .filter(|p| *p != param)
        .cloned()
        .collect();
    if others.len() == entry.params.len() {
        problems.push(Problem::NoParam {
            param: param.to_owned(),
            has: entry.params.clone(),
        });
    } else if !others.is_empty() {
        problems.push(Problem::OtherParams { params: others });
    }
    problems
}

fn warnings_of(entry: &ListedTemplate, template: &Configured) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if !entry
        .category
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(AUTHENTICATION))
    {
        warnings.push(Warning::NotAuthentication {
            category: entry.category.clone(),
        });
    }
    if let Some(language) = &entry.language {
        for locale in &template.locales {
            let language_of =
                |l: &str| l.split(['_', '-']).next().unwrap_or(l).to_ascii_lowercase();
            if language_of(locale.as_str()) != language_of(language) {
                warnings.push(Warning::OtherLanguage {
                    locale: locale.to_string(),
                    language: language.clone(),
                });
            }
        }
    }
    warnings
}

/// One line naming every template that cannot carry the code and why; `None` when all
/// can.
pub fn problems_line(findings: &[Finding]) -> Option<String> {
    let lines: Vec<String> = findings
        .iter()
        .filter(|f| !f.usable())
        .map(|f| {
            let why: Vec<String> = f.problems.iter().map(ToString::to_string).collect();
            let on = f
                .channel
                .as_deref()
                .map(|number| format!(" on {number}"))
                .unwrap_or_default();
            format!(
                "WATI template {:?} ({}){on}: {}",
                &*f.template.name,
                f.template.used_for(),
                why.join(", ")
            )
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// What `worker check-wati` prints: a table of the configured templates as WATI lists
/// them, then each problem and warning on a line of its own.
pub fn report(findings: &[Finding], param: &str) -> String {
    let header = [
        "template",
        "used for",
        "language",
        "category",
        "status",
        "parameters",
    ];
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|f| {
            let listed = f.listed.as_ref();
            let field = |value: Option<&String>| value.cloned().unwrap_or_else(|| "-".into());
            [
                f.template.name.to_string(),
                f.template.used_for(),
                field(listed.and_then(|l| l.language.as_ref())),
                field(listed.and_then(|l| l.category.as_ref())),
                listed.map_or_else(|| "NOT LISTED".to_owned(), |l| field(l.status.as_ref())),
                listed.map_or_else(|| "-".to_owned(), |l| quoted(&l.params)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    for finding in findings {
        let name = &*finding.template.name;
        for problem in &finding.problems {
            out.push(format!("error: {name}: {problem}"));
        }
        for warning in &finding.warnings {
            out.push(format!("warning: {name}: {warning}"));
        }
    }
    out.push(if findings.iter().all(Finding::usable) {
        format!("ok: every template can carry the code in parameter {param:?}")
    } else {
        "not ready: fix the errors above before sending codes".to_owned()
    });
    out.join("\n")
}

/// Why the worker would not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A template cannot carry the code.
    #[error("{0}")]
    Templates(String),
    /// The list could not be read, in a way that waiting will not mend.
    #[error("{0}")]
    List(#[source] ListError),
}

/// Exports the findings: one gauge per template, and the check's result.
fn record(findings: &[Finding]) {
    // A template is usable only if it is on every number of the pool.
    let mut usable: std::collections::BTreeMap<String, bool> = Default::default();
    for finding in findings {
        *usable
            .entry(finding.template.name.to_string())
            .or_insert(true) &= finding.usable();
    }
    for (template, usable) in usable {
        metrics::gauge!(otp_shared::metrics::WATI_TEMPLATE_USABLE, "template" => template)
            .set(f64::from(u8::from(usable)));
    }
    let result = if findings.iter().all(Finding::usable) {
        "ok"
    } else {
        "unusable"
    };
    metrics::counter!(otp_shared::metrics::WATI_TEMPLATE_CHECKS, "result" => result).increment(1);
}

fn log(findings: &[Finding], preflight: Preflight) {
    for finding in findings {
        for warning in &finding.warnings {
            tracing::warn!(template = %finding.template.name, "WATI template: {warning}");
        }
    }
    match (problems_line(findings), preflight) {
        (Some(line), Preflight::Warn) => {
            tracing::error!("{line} (WATI_PREFLIGHT=warn: starting anyway)")
        }
        (Some(line), _) => tracing::error!("{line}"),
        (None, _) => tracing::info!(
            templates = findings.len(),
            "WATI templates checked: each can carry the code"
        ),
    }
}

/// Reads WATI's list of each sending number and judges every configured template in
/// it: what `worker check-wati` prints, and what the worker checks at start and now and
/// then.
pub async fn inspect(wati: &WatiClient, templates: &Templates) -> Result<Vec<Finding>, ListError> {
    let mut findings = Vec::new();
    for channel in wati.channel_numbers() {
        let listed = wati.list_templates(channel.as_deref()).await?;
        findings.extend(
            check(templates, &listed)
                .into_iter()
                .map(|finding| Finding {
                    channel: channel.clone(),
                    ..finding
                }),
        );
    }
    Ok(findings)
}

/// The check at start, as `WATI_PREFLIGHT` says. With `on`, while WATI cannot list the
/// templates for a passing reason (5xx, 429, a timeout) the worker waits and tries
/// again, taking no traffic meanwhile; it returns `Ok(false)` if the worker began
/// stopping first. With `warn`, a list it cannot read is logged, and the worker starts
/// (the periodic check tells later).
pub async fn at_start(
    wati: &WatiClient,
    config: &WatiConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<bool, CheckError> {
    if config.preflight == Preflight::Off {
        tracing::info!("WATI_PREFLIGHT=off: the templates are not checked");
        return Ok(true);
    }
    let mut wait = FIRST_RETRY;
    let findings = loop {
        let failure = match inspect(wati, &config.templates).await {
            Ok(findings) => break findings,
            Err(e) => e,
        };
        metrics::counter!(otp_shared::metrics::WATI_TEMPLATE_CHECKS, "result" => "list_failed")
            .increment(1);
        if config.preflight == Preflight::Warn {
            tracing::error!(error = %failure, "cannot check the WATI templates (WATI_PREFLIGHT=warn: starting anyway)");
            return Ok(true);
        }
        if !failure.is_transient() {
            return Err(CheckError::List(failure));
        }
        tracing::warn!(error = %failure, wait_ms = wait.as_millis() as u64, "cannot check the WATI templates yet; taking no jobs until it can");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return Ok(false),
        }
        wait = (wait * 2).min(LONGEST_RETRY);
    };
    record(&findings);
    log(&findings, config.preflight);
    match (problems_line(&findings), config.preflight) {
        (Some(line), Preflight::On) => Err(CheckError::Templates(line)),
        _ => Ok(true),
    }
}

/// Checks the templates again every `every` until the worker stops, exporting each
/// verdict and logging what changed.
pub async fn recheck(
    wati: WatiClient,
    templates: Templates,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_problems = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        match inspect(&wati, &templates).await {
            Ok(findings) => {
                record(&findings);
                let problems = problems_line(&findings);
                if problems != last_problems {
                    match &problems {
                        Some(line) => tracing::error!("{line}"),
                        None => {
                            tracing::info!("WATI templates checked again: each can carry the code")
                        }
                    }
                }
                last_problems = problems;
            }
            Err(e) => {
                metrics::counter!(otp_shared::metrics::WATI_TEMPLATE_CHECKS, "result" => "list_failed")
                    .increment(1);
                tracing::warn!(error = %e, "could not check the WATI templates again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(
        name: &str,
        status: &str,
        category: &str,
        params: &[&str],
        language: &str,
    ) -> ListedTemplate {
        ListedTemplate {
            name: name.into(),
            language: Some(language.into()),
            category: Some(category.into()),
            status: Some(status.into()),
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn templates(map: &str) -> Templates {
        Templates::new("login_otp", "1", map).expect("valid")
    }

    #[test]
    fn an_approved_authentication_template_with_the_parameter_is_usable() {
        let findings = check(
            &templates(""),
            &[listed(
                "login_otp",
                "APPROVED",
                "AUTHENTICATION",
                &["1"],
                "en_US",
            )],
        );
        assert!(findings[0].usable());
        assert!(findings[0].warnings.is_empty());
        assert_eq!(problems_line(&findings), None);
    }

    #[test]
    fn missing_unapproved_and_parameterless_templates_are_named_on_one_line() {
        let findings = check(
            &templates("pt_BR=login_otp_pt,hi=login_otp_hi"),
            &[
                listed("login_otp", "APPROVED", "AUTHENTICATION", &["otp"], "en"),
                listed("login_otp_pt", "PAUSED", "AUTHENTICATION", &["1"], "pt_BR"),
            ],
        );
        assert_eq!(
            findings
                .iter()
                .map(|f| f.problems.clone())
                .collect::<Vec<_>>(),
            [
                vec![Problem::NoParam {
                    param: "1".into(),
                    has: vec!["otp".into()]
                }],
                vec![Problem::Missing],
                vec![Problem::NotApproved {
                    status: Some("PAUSED".into())
                }],
            ]
        );
        assert_eq!(
            problems_line(&findings).as_deref(),
            Some(
                "WATI template \"login_otp\" (default): has no parameter named \"1\" (it has \"otp\"); set WATI_TEMPLATE_PARAM; \
                 WATI template \"login_otp_hi\" (hi): not in WATI's template list; \
                 WATI template \"login_otp_pt\" (pt_BR): not APPROVED (status PAUSED)"
            )
        );
    }

    #[test]
    fn another_category_and_another_language_only_warn() {
        let findings = check(
            &templates("hi=login_otp"),
            &[listed("login_otp", "APPROVED", "UTILITY", &["1"], "en_US")],
        );
        assert!(findings[0].usable());
        assert_eq!(
            findings[0].warnings,
            [
                Warning::NotAuthentication {
                    category: Some("UTILITY".into())
                },
                Warning::OtherLanguage {
                    locale: "hi".into(),
                    language: "en_US".into()
                },
            ]
        );
    }

    #[test]
    fn parameters_the_worker_does_not_fill_make_a_template_unusable() {
        let findings = check(
            &templates(""),
            &[listed(
                "login_otp",
                "APPROVED",
                "AUTHENTICATION",
                &["1", "2"],
                "en",
            )],
        );
        assert_eq!(
            findings[0].problems,
            [Problem::OtherParams {
                params: vec!["2".into()]
            }]
        );
    }

    #[test]
    fn of_two_entries_with_one_name_the_usable_one_counts() {
        let findings = check(
            &templates(""),
            &[
                listed("login_otp", "REJECTED", "AUTHENTICATION", &["1"], "en"),
                listed("login_otp", "APPROVED", "AUTHENTICATION", &["1"], "en_US"),
            ],
        );
        assert!(findings[0].usable());
        assert_eq!(
            findings[0]
                .listed
                .as_ref()
                .and_then(|l| l.language.as_deref()),
            Some("en_US")
        );
    }

    #[test]
    fn the_report_is_a_table_then_the_verdicts() {
        let findings = check(
            &templates("pt_BR=login_otp_pt"),
            &[listed(
                "login_otp",
                "APPROVED",
                "AUTHENTICATION",
                &["1"],
                "en_US",
            )],
        );
        let report = report(&findings, "1");
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines,
            [
                "template      used for  language  category        status      parameters",
                "login_otp     default   en_US     AUTHENTICATION  APPROVED    \"1\"",
                "login_otp_pt  pt_BR     -         -               NOT LISTED  -",
                "error: login_otp_pt: not in WATI's template list",
                "not ready: fix the errors above before sending codes",
            ]
        );
    }
}
