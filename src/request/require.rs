//! Image requirements: `NVIDIA_REQUIRE_*`, `NVIDIA_DISABLE_REQUIRE` and legacy
//! `CUDA_VERSION` images, read and parsed as NVIDIA's toolkit does.
//!
//! Every `NVIDIA_REQUIRE_<X>` variable (except `NVIDIA_REQUIRE_JETPACK*`, which
//! is Tegra's) is one requirement, and all must hold. Inside one value,
//! space-separated groups are alternatives (one must hold) and the
//! comma-separated terms of a group must all hold:
//! `cuda>=12.4 brand=tesla,driver>=470,driver<471` reads "CUDA 12.4 or newer, or
//! a Tesla with an R470 driver". A term is `<rule><op><value>`:
//!
//! | rule | value found | operators |
//! |---|---|---|
//! | `cuda` | the CUDA version the driver supports (`12.4`) | `= != < <= > >=` |
//! | `driver` | the driver version (`550.54.15`) | `= != < <= > >=` |
//! | `arch` | the GPU's compute capability (`9.0`) | `= != < <= > >=` |
//! | `brand` | the GPU's brand (`Tesla`, `Nvidia`, ...), any case | `= !=` |
//!
//! Rule names and brands compare case-insensitively. Versions are digits
//! separated by dots and compare number by number, missing numbers counting as
//! 0 (`12.4 = 12.4.0`, `12.10 > 12.9`). Unlike libnvidia-container, which stops
//! parsing at the first alternative that holds, the whole value is checked, so a
//! typo anywhere is an error that names the variable.
//!
//! An image is **legacy** when `CUDA_VERSION` is non-empty and
//! `NVIDIA_REQUIRE_CUDA` is unset or empty: it requires `cuda>=<major.minor of
//! CUDA_VERSION>` (parsed as Go's semver does, `v` prefix optional), an unset
//! `NVIDIA_VISIBLE_DEVICES` means `all` and an unset
//! `NVIDIA_DRIVER_CAPABILITIES` means `all` ([`ImageEnv::legacy_visible_devices`],
//! [`ImageEnv::legacy_capabilities`]). `NVIDIA_DISABLE_REQUIRE` true in Go's
//! `strconv.ParseBool` sense (`1 t T TRUE true True`) skips every check.
//!
//! [`ImageEnv`] is what the one-pass spec reader keeps of these variables,
//! bounded whatever the environment holds: at most [`MAX_REQUIRE_VARS`] names of
//! at most [`MAX_NAME_BYTES`], values kept up to [`MAX_VALUE_BYTES`] (a longer one
//! is remembered by its length only and is an error if it is ever checked).
//! Evaluation against the driver is [`crate::resolve::require`].

use super::shown;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use thiserror::Error;

/// Most distinct `NVIDIA_REQUIRE_*` names one environment may carry (CUDA images carry one).
pub const MAX_REQUIRE_VARS: usize = 16;
/// Longest `NVIDIA_REQUIRE_*` value kept. A CUDA 12 image's `NVIDIA_REQUIRE_CUDA`
/// (a dozen brands times a few driver branches) is about 2 KiB.
pub const MAX_VALUE_BYTES: usize = 16 << 10;
/// Longest `NVIDIA_REQUIRE_*` name kept.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest `CUDA_VERSION` kept (`12.4.1` is 6 bytes).
pub const MAX_CUDA_VERSION_BYTES: usize = 64;

const REQUIRE_PREFIX: &str = "NVIDIA_REQUIRE_";
const JETPACK_PREFIX: &str = "NVIDIA_REQUIRE_JETPACK";
const REQUIRE_CUDA: &str = "NVIDIA_REQUIRE_CUDA";
const DISABLE_REQUIRE: &str = "NVIDIA_DISABLE_REQUIRE";
const CUDA_VERSION: &str = "CUDA_VERSION";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequireError {
    #[error("{var}: {term}: {reason}")]
    Term { var: String, term: String, reason: String },
    #[error("{var}: longer than {limit} bytes ({bytes} bytes)")]
    TooLong { var: String, bytes: usize, limit: usize },
    #[error("more than {limit} NVIDIA_REQUIRE_* variables in the container's environment")]
    TooManyVariables { limit: usize },
    #[error("an NVIDIA_REQUIRE_* variable name longer than {limit} bytes in the container's environment")]
    NameTooLong { limit: usize },
    #[error(
        "CUDA_VERSION={value}: not a version; an image with CUDA_VERSION and no NVIDIA_REQUIRE_CUDA requires cuda>=<major.minor of CUDA_VERSION>"
    )]
    LegacyCudaVersion { value: String },
}

/// A kept value, or the length of one too long to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvText {
    Text(String),
    TooLong(usize),
}

impl EnvText {
    fn new(value: &str, limit: usize) -> EnvText {
        if value.len() > limit { EnvText::TooLong(value.len()) } else { EnvText::Text(value.to_string()) }
    }

    fn is_empty(&self) -> bool {
        matches!(self, EnvText::Text(t) if t.is_empty())
    }
}

/// What went past the bounds while reading (an error if requirements are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    TooManyVariables,
    NameTooLong,
}

/// The requirement variables of a container's environment, the last assignment of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageEnv {
    /// `NVIDIA_REQUIRE_*` but Jetpack, in order of first appearance.
    require: Vec<(String, EnvText)>,
    overflow: Option<Overflow>,
    disable_require: bool,
    cuda_version: Option<EnvText>,
}

/// Go's `strconv.ParseBool` true; anything it rejects counts as false, as in NVIDIA's toolkit.
pub fn go_parse_bool_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

impl ImageEnv {
    /// Looks at one `process.env` entry and keeps it if it is a requirement variable.
    pub fn record(&mut self, kv: &str) {
        let Some((name, value)) = kv.split_once('=') else { return };
        if name == CUDA_VERSION {
            self.cuda_version = Some(EnvText::new(value, MAX_CUDA_VERSION_BYTES));
        } else if name == DISABLE_REQUIRE {
            self.disable_require = go_parse_bool_true(value);
        } else if name.starts_with(REQUIRE_PREFIX) && !name.starts_with(JETPACK_PREFIX) {
            if self.overflow.is_some() {
                return;
            }
            if name.len() > MAX_NAME_BYTES {
                self.overflow = Some(Overflow::NameTooLong);
            } else if let Some((_, kept)) = self.require.iter_mut().find(|(n, _)| n == name) {
                *kept = EnvText::new(value, MAX_VALUE_BYTES);
            } else if self.require.len() == MAX_REQUIRE_VARS {
                self.overflow = Some(Overflow::TooManyVariables);
            } else {
                self.require.push((name.to_string(), EnvText::new(value, MAX_VALUE_BYTES)));
            }
            if self.overflow.is_some() {
                // Nothing more is needed to report the error: free what was kept.
                self.require = Vec::new();
            }
        }
    }

    /// The variables of an environment given as `NAME=VALUE` strings.
    pub fn from_env<'a>(env: impl IntoIterator<Item = &'a str>) -> ImageEnv {
        let mut image = ImageEnv::default();
        for kv in env {
            image.record(kv);
        }
        image
    }

    /// Skips every check, as `NVIDIA_DISABLE_REQUIRE=true` does (the admin's `disable-require`).
    pub fn disable_require(&mut self) {
        self.disable_require = true;
    }

    /// `CUDA_VERSION` non-empty and `NVIDIA_REQUIRE_CUDA` unset or empty.
    pub fn is_legacy(&self) -> bool {
        let cuda_required = self.require.iter().any(|(n, v)| n == REQUIRE_CUDA && !v.is_empty());
        self.cuda_version.as_ref().is_some_and(|v| !v.is_empty()) && !cuda_required
    }

    /// What an unset `NVIDIA_VISIBLE_DEVICES` means: `all` for a legacy image, else nothing.
    pub fn legacy_visible_devices(&self) -> Option<String> {
        self.is_legacy().then(|| "all".to_string())
    }

    /// What an unset `NVIDIA_DRIVER_CAPABILITIES` means: `all` for a legacy image, else the default.
    pub fn legacy_capabilities(&self) -> Option<String> {
        self.is_legacy().then(|| "all".to_string())
    }

    /// The requirements to check, every one parsed once to find errors (nothing per
    /// term is kept: [`Requirement::alternatives`] parses again as it goes); none when
    /// `NVIDIA_DISABLE_REQUIRE` is true.
    pub fn requirements(&self) -> Result<Requirements<'_>, RequireError> {
        if self.disable_require {
            return Ok(Requirements { disabled: true, list: vec![] });
        }
        match self.overflow {
            Some(Overflow::TooManyVariables) => return Err(RequireError::TooManyVariables { limit: MAX_REQUIRE_VARS }),
            Some(Overflow::NameTooLong) => return Err(RequireError::NameTooLong { limit: MAX_NAME_BYTES }),
            None => {}
        }
        let mut list = Vec::new();
        for (name, value) in &self.require {
            let var = shown(name);
            match value {
                EnvText::TooLong(bytes) => {
                    return Err(RequireError::TooLong { var, bytes: *bytes, limit: MAX_VALUE_BYTES });
                }
                EnvText::Text(text) => {
                    validate(&var, text)?;
                    list.push(Requirement { source: Source::Variable(var), value: Cow::Borrowed(text) });
                }
            }
        }
        if self.is_legacy() {
            let value = match &self.cuda_version {
                Some(EnvText::Text(t)) => t.as_str(),
                _ => "",
            };
            let shown_value = match &self.cuda_version {
                Some(EnvText::TooLong(bytes)) => format!("<{bytes} bytes>"),
                _ => shown(value),
            };
            let version = legacy_major_minor(value)
                .ok_or_else(|| RequireError::LegacyCudaVersion { value: shown_value.clone() })?;
            let value = Cow::Owned(format!("cuda>={version}"));
            list.push(Requirement { source: Source::LegacyCudaVersion(shown_value), value });
        }
        Ok(Requirements { disabled: false, list })
    }
}

/// What the driver is asked for one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Cuda,
    Driver,
    Arch,
    Brand,
}

impl Rule {
    fn parse(name: &str) -> Option<Rule> {
        Some(match name.to_ascii_lowercase().as_str() {
            "cuda" => Rule::Cuda,
            "driver" => Rule::Driver,
            "arch" => Rule::Arch,
            "brand" => Rule::Brand,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    /// Whether `found <op> wanted` holds, given how `found` compares to `wanted`.
    pub fn holds(self, found_vs_wanted: Ordering) -> bool {
        match self {
            Op::Eq => found_vs_wanted == Ordering::Equal,
            Op::Ne => found_vs_wanted != Ordering::Equal,
            Op::Lt => found_vs_wanted == Ordering::Less,
            Op::Le => found_vs_wanted != Ordering::Greater,
            Op::Gt => found_vs_wanted == Ordering::Greater,
            Op::Ge => found_vs_wanted != Ordering::Less,
        }
    }
}

/// One `<rule><op><value>`, borrowed from the variable's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term<'a> {
    pub rule: Rule,
    pub op: Op,
    /// A version (digits and dots) for `cuda`, `driver` and `arch`; a brand name for `brand`.
    pub value: &'a str,
    /// As written (errors show it through [`shown`]).
    pub text: &'a str,
}

impl Term<'_> {
    /// Whether the term holds for `found` (a version for the version rules, a brand for `brand`).
    pub fn holds(&self, found: &str) -> bool {
        match self.rule {
            Rule::Brand => {
                self.op.holds(if found.eq_ignore_ascii_case(self.value) { Ordering::Equal } else { Ordering::Less })
            }
            _ => self.op.holds(compare_versions(found, self.value)),
        }
    }
}

/// Where a requirement came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `NVIDIA_REQUIRE_*` variable (its name, shown).
    Variable(String),
    /// The `cuda>=` a legacy image's `CUDA_VERSION` (shown) implies.
    LegacyCudaVersion(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Variable(name) => f.write_str(name),
            Source::LegacyCudaVersion(v) => write!(f, "CUDA_VERSION={v} of an image without NVIDIA_REQUIRE_CUDA"),
        }
    }
}

/// One variable's requirement: one of the alternatives must hold, every term of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub source: Source,
    /// The value, known to parse ([`validate`]).
    pub value: Cow<'a, str>,
}

impl Requirement<'_> {
    /// The alternatives, each the terms that must all hold, parsed as they are walked.
    pub fn alternatives(&self) -> impl Iterator<Item = impl Iterator<Item = Term<'_>>> {
        // The value was validated when the requirement was made: every term parses.
        term_texts(&self.value).map(|terms| terms.filter_map(|t| parse_term("", t).ok()))
    }

    pub fn alternative_count(&self) -> usize {
        term_texts(&self.value).count()
    }
}

/// Every requirement of an image; all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements<'a> {
    /// `NVIDIA_DISABLE_REQUIRE` said to skip them.
    pub disabled: bool,
    pub list: Vec<Requirement<'a>>,
}

/// The raw terms of a value: space-separated alternatives of comma-separated terms,
/// empty ones skipped (`a  b,,c` is `a` or `b and c`; an alternative of only commas is none).
pub fn term_texts(value: &str) -> impl Iterator<Item = impl Iterator<Item = &str>> {
    fn terms(group: &str) -> impl Iterator<Item = &str> {
        group.split(',').filter(|t| !t.is_empty())
    }
    value.split(' ').filter(|g| terms(g).next().is_some()).map(terms)
}

/// Checks that every term of a value parses; `var` is the shown name, for errors.
pub fn validate(var: &str, value: &str) -> Result<(), RequireError> {
    for alternative in term_texts(value) {
        for term in alternative {
            parse_term(var, term)?;
        }
    }
    Ok(())
}

/// Parses one value whole (for tests and tools; checking walks [`Requirement::alternatives`]).
pub fn parse_value<'a>(var: &str, value: &'a str) -> Result<Vec<Vec<Term<'a>>>, RequireError> {
    term_texts(value).map(|terms| terms.map(|t| parse_term(var, t)).collect()).collect()
}

const OPERATOR_CHARS: &[char] = &['<', '>', '=', '!'];

/// Parses one non-empty term.
pub fn parse_term<'a>(var: &str, text: &'a str) -> Result<Term<'a>, RequireError> {
    let err = |reason: String| RequireError::Term { var: var.to_string(), term: shown(text), reason };
    let Some(op_at) = text.find(OPERATOR_CHARS) else {
        return Err(err("no operator (one of = != < <= > >=)".into()));
    };
    let (name, rest) = text.split_at(op_at);
    let op_len = rest.find(|c| !OPERATOR_CHARS.contains(&c)).unwrap_or(rest.len());
    let (op_text, value) = rest.split_at(op_len);
    if name.is_empty() {
        return Err(err("no rule before the operator (cuda, driver, arch or brand)".into()));
    }
    let rule = Rule::parse(name)
        .ok_or_else(|| err(format!("unknown rule '{}' (known: cuda, driver, arch, brand)", shown(name))))?;
    let op = Op::parse(op_text)
        .ok_or_else(|| err(format!("unknown operator '{}' (one of = != < <= > >=)", shown(op_text))))?;
    if value.is_empty() {
        return Err(err("no value after the operator".into()));
    }
    if rule == Rule::Brand && !matches!(op, Op::Eq | Op::Ne) {
        return Err(err("brand takes only = and !=".into()));
    }
    if rule != Rule::Brand && !is_version(value) {
        return Err(err(format!("'{}' is not a version (digits and dots, e.g. 12.4)", shown(value))));
    }
    Ok(Term { rule, op, value, text })
}

/// Digits separated by single dots: `12`, `12.4`, `550.54.15`.
pub fn is_version(s: &str) -> bool {
    s.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Compares two versions ([`is_version`]) number by number, a missing number
/// counting as 0; numbers of any length (no overflow: compared as digit strings).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let number = |n: &str| -> (usize, String) {
        let n = n.trim_start_matches('0');
        (n.len(), n.to_string())
    };
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let o = number(x.unwrap_or("0")).cmp(&number(y.unwrap_or("0")));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// `major.minor` of a `CUDA_VERSION`, as NVIDIA's toolkit reads it: a semantic
/// version (Go's `golang.org/x/mod/semver`, `v` prefix optional) `MAJOR[.MINOR[.PATCH[-pre][+build]]]`,
/// numbers without leading zeros, major and minor below 2^32. `12` is `12.0`.
pub fn legacy_major_minor(version: &str) -> Option<String> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let (major, rest) = semver_number(v)?;
    let (minor, rest) = match rest.strip_prefix('.') {
        None if rest.is_empty() => ("0", ""),
        None => return None,
        Some(r) => semver_number(r)?,
    };
    if !rest.is_empty() {
        let (_patch, mut rest) = semver_number(rest.strip_prefix('.')?)?;
        if let Some(r) = rest.strip_prefix('-') {
            let end = r.find('+').unwrap_or(r.len());
            let numeric_ok = |id: &str| !id.bytes().all(|b| b.is_ascii_digit()) || id == "0" || !id.starts_with('0');
            if !r[..end].split('.').all(|id| semver_identifier(id) && numeric_ok(id)) {
                return None;
            }
            rest = &r[end..];
        }
        if let Some(build) = rest.strip_prefix('+') {
            if !build.split('.').all(semver_identifier) {
                return None;
            }
            rest = "";
        }
        if !rest.is_empty() {
            return None;
        }
    }
    major.parse::<u32>().ok()?;
    minor.parse::<u32>().ok()?;
    Some(format!("{major}.{minor}"))
}

/// A leading decimal without leading zeros, and what follows it.
fn semver_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = &s[..end];
    (!n.is_empty() && (n == "0" || !n.starts_with('0'))).then(|| (n, &s[end..]))
}

fn semver_identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(value: &str) -> Vec<Vec<String>> {
        let parsed = parse_value("NVIDIA_REQUIRE_CUDA", value).unwrap();
        parsed.iter().map(|g| g.iter().map(|t| t.text.to_string()).collect()).collect()
    }
    fn err(value: &str) -> String {
        parse_value("NVIDIA_REQUIRE_CUDA", value).unwrap_err().to_string()
    }
    fn term(text: &str) -> Term<'_> {
        parse_term("V", text).unwrap()
    }
    fn texts(r: &Requirement<'_>) -> Vec<Vec<String>> {
        r.alternatives().map(|g| g.map(|t| t.text.to_string()).collect()).collect()
    }
    fn env(vars: &[&str]) -> ImageEnv {
        ImageEnv::from_env(vars.iter().copied())
    }
    fn sources(image: &ImageEnv) -> Vec<String> {
        image.requirements().unwrap().list.iter().map(|r| r.source.to_string()).collect()
    }

    #[test]
    fn spaces_separate_alternatives_and_commas_terms() {
        assert_eq!(
            terms("cuda>=12.4 brand=tesla,driver>=470,driver<471"),
            [vec!["cuda>=12.4"], vec!["brand=tesla", "driver>=470", "driver<471"]]
        );
        assert_eq!(
            terms("  cuda>=12.4   arch=9.0,,brand=nvidia, "),
            [vec!["cuda>=12.4"], vec!["arch=9.0", "brand=nvidia"]]
        );
        assert_eq!(terms(""), Vec::<Vec<String>>::new());
        assert_eq!(terms(" , ,"), Vec::<Vec<String>>::new());
    }

    #[test]
    fn every_operator_and_rule_parses() {
        assert_eq!((term("cuda=12.4").rule, term("cuda=12.4").op), (Rule::Cuda, Op::Eq));
        assert_eq!(term("driver!=470").op, Op::Ne);
        assert_eq!(term("arch<9.0").op, Op::Lt);
        assert_eq!(term("arch<=9.0").op, Op::Le);
        assert_eq!(term("cuda>12").op, Op::Gt);
        assert_eq!(term("cuda>=12").op, Op::Ge);
        assert_eq!(term("brand!=GeForce").op, Op::Ne);
        assert_eq!(term("CUDA>=12.4").rule, Rule::Cuda);
        assert_eq!(term("Driver>=470").rule, Rule::Driver);
        assert_eq!(term("ARCH=8.0").rule, Rule::Arch);
        assert_eq!(term("Brand=Tesla").value, "Tesla");
    }

    #[test]
    fn bad_terms_name_the_variable_the_term_and_the_reason() {
        assert_eq!(err("cuda12.4"), "NVIDIA_REQUIRE_CUDA: cuda12.4: no operator (one of = != < <= > >=)");
        assert_eq!(
            err(">=12.4"),
            "NVIDIA_REQUIRE_CUDA: >=12.4: no rule before the operator (cuda, driver, arch or brand)"
        );
        assert_eq!(err("cuda=>12.4"), "NVIDIA_REQUIRE_CUDA: cuda=>12.4: unknown operator '=>' (one of = != < <= > >=)");
        assert_eq!(err("cuda==12.4"), "NVIDIA_REQUIRE_CUDA: cuda==12.4: unknown operator '==' (one of = != < <= > >=)");
        assert_eq!(err("cuda>="), "NVIDIA_REQUIRE_CUDA: cuda>=: no value after the operator");
        assert_eq!(
            err("os=linux"),
            "NVIDIA_REQUIRE_CUDA: os=linux: unknown rule 'os' (known: cuda, driver, arch, brand)"
        );
        assert_eq!(err("brand>=tesla"), "NVIDIA_REQUIRE_CUDA: brand>=tesla: brand takes only = and !=");
        assert_eq!(
            err("cuda>=12.4a"),
            "NVIDIA_REQUIRE_CUDA: cuda>=12.4a: '12.4a' is not a version (digits and dots, e.g. 12.4)"
        );
        assert!(err("cuda>=12.").ends_with("'12.' is not a version (digits and dots, e.g. 12.4)"));
        assert!(err("driver>=.470").ends_with("'.470' is not a version (digits and dots, e.g. 12.4)"));
        assert!(err("arch>=9..0").ends_with("'9..0' is not a version (digits and dots, e.g. 12.4)"));
        assert!(err("cuda>=-1").ends_with("'-1' is not a version (digits and dots, e.g. 12.4)"));
        // The whole value is checked: a bad term after an alternative that would hold is still an error.
        assert!(err("cuda>=1.0 brand=tesla,drvier>=470").contains("drvier>=470: unknown rule 'drvier'"));
        // A tab is not a separator (as in NVIDIA's CLI): it ends up inside a version.
        assert!(err("cuda>=12.4\tbrand=tesla").contains("is not a version"));
    }

    #[test]
    fn container_text_in_errors_is_escaped_and_cut() {
        let e = err("cuda>=1\nmighook:forged");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("NVIDIA_REQUIRE_CUDA: \"cuda>=1\\nmighook:forged\": "), "{e}");
        let e = err(&format!("cuda>={}", "9".repeat(10_000) + "x"));
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn versions_compare_number_by_number() {
        assert_eq!(compare_versions("12.4", "12.4"), Ordering::Equal);
        assert_eq!(compare_versions("12.4", "12.4.0"), Ordering::Equal);
        assert_eq!(compare_versions("12.4.0.0", "12.4"), Ordering::Equal);
        assert_eq!(compare_versions("12.04", "12.4"), Ordering::Equal);
        assert_eq!(compare_versions("12.10", "12.9"), Ordering::Greater);
        assert_eq!(compare_versions("12.4", "12.4.1"), Ordering::Less);
        assert_eq!(compare_versions("550.54.15", "550.100"), Ordering::Less);
        assert_eq!(compare_versions("471", "470.199.02"), Ordering::Greater);
        assert_eq!(compare_versions("99999999999999999999999", "99999999999999999999998"), Ordering::Greater);
        assert_eq!(compare_versions("0", "0.0.0"), Ordering::Equal);
    }

    #[test]
    fn terms_hold_as_their_operator_says() {
        assert!(term("cuda>=12.4").holds("12.4"));
        assert!(term("cuda>=12.4").holds("12.6"));
        assert!(!term("cuda>=12.4").holds("12.2"));
        assert!(term("cuda>12.4").holds("12.5"));
        assert!(!term("cuda>12.4").holds("12.4.0"));
        assert!(term("driver<471").holds("470.199.02"));
        assert!(!term("driver<471").holds("471.0"));
        assert!(term("driver<=470").holds("470.0.0"));
        assert!(term("arch=9.0").holds("9"));
        assert!(term("arch!=8.0").holds("9.0"));
        assert!(!term("arch!=8.0").holds("8"));
        assert!(term("brand=tesla").holds("Tesla"));
        assert!(!term("brand=tesla").holds("Nvidia"));
        assert!(term("brand!=geforce").holds("Nvidia"));
        assert!(!term("brand!=GEFORCE").holds("GeForce"));
    }

    #[test]
    fn every_require_variable_but_jetpack_counts_in_order_of_appearance() {
        let image = env(&[
            "NVIDIA_REQUIRE_DRIVER=driver>=470",
            "PATH=/bin",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
            "NVIDIA_REQUIRE_JETPACK=csv-mounts=all",
            "NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS=",
            "NVIDIA_REQUIRE_=arch>=8.0",
        ]);
        assert_eq!(sources(&image), ["NVIDIA_REQUIRE_DRIVER", "NVIDIA_REQUIRE_CUDA", "NVIDIA_REQUIRE_"]);
    }

    #[test]
    fn the_last_assignment_of_a_variable_counts() {
        let image = env(&["NVIDIA_REQUIRE_CUDA=cuda>=99", "NVIDIA_REQUIRE_CUDA=cuda>=12.4"]);
        let r = image.requirements().unwrap();
        assert_eq!(r.list.len(), 1);
        assert_eq!(texts(&r.list[0]), [["cuda>=12.4"]]);
        assert!(
            !env(&["NVIDIA_DISABLE_REQUIRE=true", "NVIDIA_DISABLE_REQUIRE=false"]).requirements().unwrap().disabled
        );
    }

    #[test]
    fn disable_require_is_go_parse_bool_true() {
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            let image = env(&["NVIDIA_REQUIRE_CUDA=cuda>=99", &format!("NVIDIA_DISABLE_REQUIRE={yes}")]);
            assert_eq!(image.requirements().unwrap(), Requirements { disabled: true, list: vec![] }, "{yes}");
        }
        for no in ["0", "false", "tRUE", "yes", "on", " true", ""] {
            let image = env(&["NVIDIA_REQUIRE_CUDA=cuda>=99", &format!("NVIDIA_DISABLE_REQUIRE={no}")]);
            assert!(!image.requirements().unwrap().disabled, "{no:?}");
        }
    }

    #[test]
    fn disable_require_skips_even_what_would_not_parse() {
        let image = env(&["NVIDIA_REQUIRE_CUDA=cuda=>x", "CUDA_VERSION=junk", "NVIDIA_DISABLE_REQUIRE=1"]);
        assert!(image.requirements().unwrap().disabled);
    }

    #[test]
    fn a_legacy_image_is_cuda_version_without_require_cuda() {
        assert!(env(&["CUDA_VERSION=11.0.3"]).is_legacy());
        assert!(env(&["CUDA_VERSION=11.0.3", "NVIDIA_REQUIRE_CUDA="]).is_legacy());
        assert!(env(&["CUDA_VERSION=11.0.3", "NVIDIA_REQUIRE_DRIVER=driver>=450"]).is_legacy());
        assert!(!env(&["CUDA_VERSION=11.0.3", "NVIDIA_REQUIRE_CUDA=cuda>=11.0"]).is_legacy());
        assert!(!env(&["CUDA_VERSION="]).is_legacy());
        assert!(!env(&["PATH=/bin"]).is_legacy());
        assert_eq!(env(&["CUDA_VERSION=11.0.3"]).legacy_visible_devices().as_deref(), Some("all"));
        assert_eq!(env(&["CUDA_VERSION=11.0.3"]).legacy_capabilities().as_deref(), Some("all"));
        assert_eq!(env(&["NVIDIA_REQUIRE_CUDA=cuda>=11.0"]).legacy_visible_devices(), None);
    }

    #[test]
    fn a_legacy_image_requires_the_major_minor_of_its_cuda_version() {
        let image = env(&["CUDA_VERSION=11.0.3", "NVIDIA_REQUIRE_CUDA="]);
        let r = image.requirements().unwrap();
        assert_eq!(
            sources(&env(&["CUDA_VERSION=11.0.3"])),
            ["CUDA_VERSION=11.0.3 of an image without NVIDIA_REQUIRE_CUDA"]
        );
        let legacy = r.list.last().unwrap();
        assert_eq!(texts(legacy), [["cuda>=11.0"]]);
        assert_eq!(legacy.alternatives().next().unwrap().next().unwrap(), term("cuda>=11.0"));
    }

    #[test]
    fn cuda_version_is_read_as_go_semver() {
        assert_eq!(legacy_major_minor("11.0.3").as_deref(), Some("11.0"));
        assert_eq!(legacy_major_minor("v12.4.1").as_deref(), Some("12.4"));
        assert_eq!(legacy_major_minor("12.4").as_deref(), Some("12.4"));
        assert_eq!(legacy_major_minor("12").as_deref(), Some("12.0"));
        assert_eq!(legacy_major_minor("12.4.1-rc.1+build.5").as_deref(), Some("12.4"));
        assert_eq!(legacy_major_minor("10.0.130"), Some("10.0".into()));
        assert_eq!(legacy_major_minor(""), None);
        assert_eq!(legacy_major_minor("vv12.4"), None);
        assert_eq!(legacy_major_minor("12.4.1.2"), None);
        assert_eq!(legacy_major_minor("012.4"), None);
        assert_eq!(legacy_major_minor("12.4-rc1"), None);
        assert_eq!(legacy_major_minor("12.4.1-01"), None);
        assert_eq!(legacy_major_minor("12.4.1+"), None);
        assert_eq!(legacy_major_minor("12.x"), None);
        assert_eq!(legacy_major_minor("4294967296.0"), None);
    }

    #[test]
    fn a_bad_legacy_cuda_version_is_an_error_naming_it() {
        assert_eq!(
            env(&["CUDA_VERSION=eleven"]).requirements().unwrap_err().to_string(),
            "CUDA_VERSION=eleven: not a version; an image with CUDA_VERSION and no NVIDIA_REQUIRE_CUDA requires cuda>=<major.minor of CUDA_VERSION>"
        );
        let long = format!("CUDA_VERSION={}", "1".repeat(100));
        assert!(
            env(&[&long])
                .requirements()
                .unwrap_err()
                .to_string()
                .starts_with("CUDA_VERSION=<100 bytes>: not a version")
        );
    }

    #[test]
    fn what_is_kept_is_bounded() {
        // A value over the limit is remembered by its length, and an error only when checked.
        let long = format!("NVIDIA_REQUIRE_CUDA={}", "cuda>=1 ".repeat(3000));
        let image = env(&[&long]);
        assert_eq!(image.require[0].1, EnvText::TooLong(24000));
        assert_eq!(
            image.requirements().unwrap_err().to_string(),
            "NVIDIA_REQUIRE_CUDA: longer than 16384 bytes (24000 bytes)"
        );
        // A later short assignment replaces it.
        assert!(env(&[&long, "NVIDIA_REQUIRE_CUDA=cuda>=1"]).requirements().is_ok());
        // Repeats of a name cost one entry; a seventeenth name is an error and frees the rest.
        let many: Vec<String> = (0..100_000).map(|i| format!("NVIDIA_REQUIRE_{}=cuda>=1", i % 16)).collect();
        let image = ImageEnv::from_env(many.iter().map(String::as_str));
        assert_eq!(image.require.len(), 16);
        let too_many: Vec<String> = (0..17).map(|i| format!("NVIDIA_REQUIRE_{i}=")).collect();
        let image = ImageEnv::from_env(too_many.iter().map(String::as_str));
        assert!(image.require.is_empty());
        assert_eq!(
            image.requirements().unwrap_err().to_string(),
            "more than 16 NVIDIA_REQUIRE_* variables in the container's environment"
        );
        let long_name = format!("NVIDIA_REQUIRE_{}=cuda>=1", "X".repeat(200));
        assert_eq!(
            env(&[&long_name]).requirements().unwrap_err().to_string(),
            "an NVIDIA_REQUIRE_* variable name longer than 128 bytes in the container's environment"
        );
    }

    #[test]
    fn names_in_errors_are_shown() {
        let e = env(&["NVIDIA_REQUIRE_\u{1b}[31m=x"]).requirements().unwrap_err().to_string();
        assert!(e.starts_with("\"NVIDIA_REQUIRE_\\u{1b}[31m\": "), "{e}");
    }
}
