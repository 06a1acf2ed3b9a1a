//! Request grammar: what a container asks for, before any driver is consulted.
//!
//! The value of `NVIDIA_VISIBLE_DEVICES` (and docker `--gpus device=...`) is a
//! comma-separated list. Each entry is trimmed, empty entries are skipped, and
//! every entry must match one form exactly; nothing is a partial match
//! (`0:1:2`, `-1` and `1abc` are errors, unlike libnvidia-container's sscanf).
//!
//! | entry | meaning |
//! |---|---|
//! | `all` | every GPU and MIG device |
//! | `none` | control nodes only, no GPU |
//! | `void`, empty, unset | not a GPU container: no edits |
//! | `3` | GPU by NVML index (not the device minor) |
//! | `GPU-<uuid>` | GPU by UUID |
//! | `0000:3b:00.0`, `3b:00.0` | GPU by PCI bus id (hex, any case, domain optional) |
//! | `MIG-<uuid>` | MIG device by UUID (R470+ drivers) |
//! | `MIG-GPU-<uuid>/<gi>/<ci>` | MIG device by parent UUID + GPU/compute instance ids (R450/R460 names) |
//! | `<i>:<j>` | MIG device `j` of GPU `i` (see [`DeviceId::MigIndex`]) |
//! | `<vendor>/<class>=<name>` | a CDI device name of one of [`GPU_KINDS`]: `<name>` is `all`, an index, `<i>:<j>`, `GPU-<uuid>`, `MIG-<uuid>` or `MIG-GPU-<uuid>/<gi>/<ci>`, as NVIDIA's jit-cdi runtime takes them |
//!
//! CDI names (`nvidia.com/gpu=0`, `k8s.device-plugin.nvidia.com/gpu=MIG-...`,
//! `nvidia.com/gpu=all`) name the same devices as the plain forms: what the
//! spec `mighook cdi generate` writes (or the device plugin's) calls that name.
//! NVIDIA's jit-cdi does not take PCI bus ids and neither does a CDI name here;
//! any other kind (another vendor's, or an NVIDIA kind that is not a GPU, such
//! as `nvidia.com/imex-channel` or `k8s.device-plugin.nvidia.com/gds`) is an
//! error naming it: mighook cannot give it, and dropping it would start the
//! container without what it asked for.
//!
//! `NVIDIA_IMEX_CHANNELS` ([`parse_imex_channels`]) is a list of its own:
//! channel numbers below 2^20 (libnvidia-container's bound), `all` (every
//! channel the host has), or `none`/`void`/empty (no channel).
//!
//! Every number is bounded by its digits, not only by what fits a `u32`: an
//! index (`3`, both halves of `i:j`) has at most [`MAX_INDEX_DIGITS`] digits and
//! a GPU/compute instance id at most [`MAX_INSTANCE_DIGITS`]; more digits (even
//! leading zeros) is "out of range", so a million zeros in front of `9` is an
//! error, not GPU 9. The list is read as a stream, never collected: entries are
//! parsed and de-duplicated as they come, and more than [`MAX_DEVICES`] distinct
//! devices is an error, so a list costs memory for what it names, not for how
//! often it repeats it.

pub mod capabilities;
pub mod require;
pub mod source;

use std::collections::HashSet;
use std::fmt;
use thiserror::Error;

pub use capabilities::DriverCapabilities;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{entry}: not a GPU index, UUID, PCI bus id or MIG device")]
    UnknownForm { entry: String },
    #[error("{entry}: {reason}")]
    Malformed { entry: String, reason: &'static str },
    #[error("NVIDIA_DRIVER_CAPABILITIES: unknown driver capability '{name}' (known: {known})")]
    UnknownCapability { name: String, known: &'static str },
    #[error("{var}={value}: only 'all' is supported")]
    MigAccessValue { var: &'static str, value: String },
    #[error("{var}: needs a privileged container (CAP_SYS_ADMIN in the bounding set)")]
    MigAccessUnprivileged { var: &'static str },
    #[error("{entry}: more than {limit} distinct devices in one request")]
    TooManyDevices { entry: String, limit: usize },
    #[error("{entry}: CDI kind {kind} is not one mighook serves (it serves {served})")]
    UnservedKind { entry: String, kind: String, served: &'static str },
    #[error("IMEX channel {entry}: {reason}")]
    ImexChannel { entry: String, reason: &'static str },
}

/// CDI kinds whose devices are GPUs and MIG devices, named as [`parse_entry`]
/// names them: mighook's and nvidia-ctk's own, the device plugin's (its
/// cdi-annotations and cdi-cri strategies), the GPU Operator's management
/// kind, and the kind NVIDIA's jit-cdi runtime makes up on the fly.
pub const GPU_KINDS: [&str; 4] =
    ["nvidia.com/gpu", "k8s.device-plugin.nvidia.com/gpu", "management.nvidia.com/gpu", "runtime.nvidia.com/gpu"];
/// [`GPU_KINDS`] as error messages list them.
const GPU_KINDS_SHOWN: &str =
    "nvidia.com/gpu, k8s.device-plugin.nvidia.com/gpu, management.nvidia.com/gpu, runtime.nvidia.com/gpu";
/// CDI kinds whose devices are IMEX channels (`<kind>=<channel>`), as nvidia-ctk
/// (`--mode imex`) and the device plugin name them.
pub const IMEX_KINDS: [&str; 2] = ["nvidia.com/imex-channel", "k8s.device-plugin.nvidia.com/imex-channel"];

/// A CDI kind of NVIDIA's (`nvidia.com/...` or `<anything>.nvidia.com/...`): one
/// mighook must serve or refuse, never leave to the engine's own CDI handling.
pub fn is_nvidia_kind(kind: &str) -> bool {
    let vendor = kind.split_once('/').map_or(kind, |(v, _)| v);
    vendor == "nvidia.com" || vendor.ends_with(".nvidia.com")
}

/// `(kind, name)` of a CDI device name `<vendor>/<class>=<name>`; `None` without `=`.
pub fn split_cdi_name(text: &str) -> Option<(&str, &str)> {
    text.split_once('=')
}

/// Most distinct devices one request may name. A node has at most a few hundred
/// GPU and MIG devices (8 GPUs × 7 MIG devices, each by index, UUID and bus id, is
/// well under this); only a hostile list gets near it. Repeats of a device do not
/// count, so any number of copies of one device is fine.
pub const MAX_DEVICES: usize = 4096;
/// Most digits of an index: a GPU index, and each half of `<i>:<j>`. NVML has at
/// most a few dozen GPUs and 7 MIG devices per GPU.
pub const MAX_INDEX_DIGITS: usize = 3;
/// Most digits of a GPU or compute instance id in `MIG-GPU-<uuid>/<gi>/<ci>` (ids are below 16).
pub const MAX_INSTANCE_DIGITS: usize = 2;

/// A PCI bus id, normalised so `0000:3B:00.0` and `3b:00.0` compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciBusId {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciBusId {
    /// Parses `[domain:]bus:device.function` in hex; NVML's `00000000:07:00.0` too.
    pub fn parse(s: &str) -> Option<PciBusId> {
        let (rest, function) = s.rsplit_once('.')?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        if parts.len() == 2 {
            parts.insert(0, "0");
        }
        let [domain, bus, device] = parts[..] else { return None };
        let hex = |f: &str, max_len: usize| -> Option<u32> {
            if f.is_empty() || f.len() > max_len || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(f, 16).ok()
        };
        let function = hex(function, 1)?;
        let device = hex(device, 2)?;
        if function > 7 || device > 0x1f {
            return None;
        }
        Some(PciBusId {
            domain: hex(domain, 8)?,
            bus: hex(bus, 2)? as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciBusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

/// One device named by one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceId {
    /// NVML index (the `nvidia-smi` number), not the device minor.
    Index(u32),
    /// `GPU-<uuid>`, stored lower-case.
    GpuUuid(String),
    PciBusId(PciBusId),
    /// `MIG-<uuid>`, stored lower-case.
    MigUuid(String),
    /// `MIG-GPU-<uuid>/<gi>/<ci>`: resolved by parent UUID and instance ids, never by
    /// comparing strings with NVML's MIG UUID, so it works on R470+ drivers too.
    LegacyMig {
        gpu_uuid: String,
        gi: u32,
        ci: u32,
    },
    /// `<i>:<j>`: GPU `i` by NVML index, then `j` is the index passed to
    /// `nvmlDeviceGetMigDeviceHandleByIndex` — the "MIG ... Device j" number of
    /// `nvidia-smi -L` and of CDI names. Empty slots in that table are skipped,
    /// not the end of the walk, so `j` never shifts when another instance is destroyed.
    MigIndex {
        gpu: u32,
        slot: u32,
    },
}

/// One parsed entry, with the text the user wrote (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub text: String,
    pub id: DeviceId,
}

/// The whole device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceList {
    /// Not a GPU container: no edits at all.
    Void,
    /// A GPU container with no GPU: control nodes only.
    None,
    All,
    Devices(Vec<Entry>),
}

/// Parses a device list; `None` (unset) is `void`.
///
/// Special values follow NVIDIA's toolkit: `void` anywhere wins, otherwise the
/// first of `all`/`none` in list order wins. Two passes over the borrowed text
/// (one for the special values, one to parse), each a lazy split: nothing is
/// kept per entry but the distinct devices, at most [`MAX_DEVICES`] of them.
pub fn parse_device_list(value: Option<&str>) -> Result<DeviceList, RequestError> {
    let Some(value) = value else { return Ok(DeviceList::Void) };
    let entries = || value.split(',').map(str::trim).filter(|e| !e.is_empty());
    let mut first_special = None;
    let mut any = false;
    for e in entries() {
        any = true;
        if e.eq_ignore_ascii_case("void") {
            return Ok(DeviceList::Void);
        }
        // `nvidia.com/gpu=all` is `all` (as nvidia-ctk's `all` device is every device).
        let e = match split_cdi_name(e) {
            Some((kind, name)) if GPU_KINDS.contains(&kind) && name.eq_ignore_ascii_case("all") => name,
            _ => e,
        };
        if first_special.is_none() && e.eq_ignore_ascii_case("all") {
            first_special = Some(DeviceList::All);
        } else if first_special.is_none() && e.eq_ignore_ascii_case("none") {
            first_special = Some(DeviceList::None);
        }
    }
    if !any {
        return Ok(DeviceList::Void);
    }
    if let Some(special) = first_special {
        return Ok(special);
    }
    let mut parsed = Vec::new();
    // A set, not a scan of `parsed`: an image may repeat a device a million times.
    let mut seen = HashSet::new();
    for text in entries() {
        let id = parse_entry(text)?;
        if seen.contains(&id) {
            continue;
        }
        if seen.len() == MAX_DEVICES {
            return Err(RequestError::TooManyDevices { entry: shown(text), limit: MAX_DEVICES });
        }
        seen.insert(id.clone());
        // Shown form: errors and logs echo it, and an image chooses it.
        parsed.push(Entry { text: shown(text), id });
    }
    Ok(DeviceList::Devices(parsed))
}

/// Parses one trimmed, non-empty, non-special entry.
pub fn parse_entry(text: &str) -> Result<DeviceId, RequestError> {
    match split_cdi_name(text) {
        Some((kind, name)) => parse_cdi_entry(text, kind, name),
        None => parse_form(text, text),
    }
}

/// A CDI device name: the name part in the plain grammar, for a GPU kind only.
fn parse_cdi_entry(text: &str, kind: &str, name: &str) -> Result<DeviceId, RequestError> {
    let malformed = |reason| RequestError::Malformed { entry: shown(text), reason };
    let (Some((vendor, class)), false) = (kind.split_once('/'), name.is_empty()) else {
        return Err(malformed("a CDI device name is <vendor>/<class>=<name>"));
    };
    if vendor.is_empty() || class.is_empty() || class.contains('/') {
        return Err(malformed("a CDI device name is <vendor>/<class>=<name>"));
    }
    if IMEX_KINDS.contains(&kind) {
        return Err(malformed("IMEX channels are asked for with NVIDIA_IMEX_CHANNELS, not in the device list"));
    }
    if !GPU_KINDS.contains(&kind) {
        return Err(RequestError::UnservedKind { entry: shown(text), kind: shown(kind), served: GPU_KINDS_SHOWN });
    }
    match parse_form(name, text)? {
        DeviceId::PciBusId(_) => Err(malformed("a PCI bus id is not a CDI device name (use the index or UUID)")),
        id => Ok(id),
    }
}

/// Parses one entry in the plain grammar; errors name `shown_as` (the whole entry).
fn parse_form(text: &str, shown_as: &str) -> Result<DeviceId, RequestError> {
    let malformed = |reason| RequestError::Malformed { entry: shown(shown_as), reason };
    if let Some(n) = parse_decimal(text, MAX_INDEX_DIGITS) {
        return n.map(DeviceId::Index).ok_or_else(|| malformed("GPU index out of range"));
    }
    if let Some((i, j)) = text.split_once(':')
        && let (Some(i), Some(j)) = (parse_decimal(i, MAX_INDEX_DIGITS), parse_decimal(j, MAX_INDEX_DIGITS))
    {
        return match (i, j) {
            (Some(gpu), Some(slot)) => Ok(DeviceId::MigIndex { gpu, slot }),
            _ => Err(malformed("MIG index out of range")),
        };
    }
    if let Some(rest) = strip_prefix_ignore_case(text, "MIG-GPU-") {
        let mut fields = rest.split('/');
        let (Some(uuid), Some(gi), Some(ci), None) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed("legacy MIG name must be MIG-GPU-<uuid>/<gi>/<ci>"));
        };
        let (Some(gi), Some(ci)) = (parse_decimal(gi, MAX_INSTANCE_DIGITS), parse_decimal(ci, MAX_INSTANCE_DIGITS))
        else {
            return Err(malformed("legacy MIG name must be MIG-GPU-<uuid>/<gi>/<ci>"));
        };
        let (Some(gi), Some(ci)) = (gi, ci) else {
            return Err(malformed("GPU/compute instance id out of range (at most 2 digits)"));
        };
        let uuid = canonical_uuid(uuid).ok_or_else(|| malformed("malformed GPU UUID in legacy MIG name"))?;
        return Ok(DeviceId::LegacyMig { gpu_uuid: format!("GPU-{uuid}"), gi, ci });
    }
    if let Some(rest) = strip_prefix_ignore_case(text, "MIG-") {
        let uuid = canonical_uuid(rest)
            .ok_or_else(|| malformed("malformed MIG UUID (expected MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))?;
        return Ok(DeviceId::MigUuid(format!("MIG-{uuid}")));
    }
    if let Some(rest) = strip_prefix_ignore_case(text, "GPU-") {
        let uuid = canonical_uuid(rest)
            .ok_or_else(|| malformed("malformed GPU UUID (expected GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))?;
        return Ok(DeviceId::GpuUuid(format!("GPU-{uuid}")));
    }
    if let Some(pci) = PciBusId::parse(text) {
        return Ok(DeviceId::PciBusId(pci));
    }
    if text.starts_with(source::VOLUME_MOUNT_DIR) {
        return Err(malformed(
            "a volume-mounts device list (the device plugin's strategy), but accept-volume-mounts is off",
        ));
    }
    Err(RequestError::UnknownForm { entry: shown(shown_as) })
}

/// How error messages show text a container wrote: as written when short and
/// printable, else escaped, quoted and cut, so an image can neither flood the
/// runtime's error line nor forge lines in the log file.
pub fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.len() <= MAX_CHARS && text.bytes().all(|b| b.is_ascii_graphic()) {
        return text.to_string();
    }
    let escaped: String = text.chars().take(MAX_CHARS).flat_map(char::escape_default).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        format!("\"{escaped}\"... ({} bytes)", text.len())
    } else {
        format!("\"{escaped}\"")
    }
}

/// `Some(Some(n))` for a plain decimal of at most `max_digits` digits (leading
/// zeros count: the bound is on what an image may send, not on the value),
/// `Some(None)` for more digits, `None` when it is not all digits (no sign, no spaces).
fn parse_decimal(s: &str, max_digits: usize) -> Option<Option<u32>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 7 digits always fit a u32; the parse cannot fail.
    Some((s.len() <= max_digits).then(|| s.parse().ok()).flatten())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// A UUID body in 8-4-4-4-12 hex form, lower-cased; NVML compares case-insensitively.
pub fn canonical_uuid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == lens.len()
        && groups.iter().zip(lens).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| s.to_ascii_lowercase())
}

/// Most digits of an IMEX channel number (channels are below 2^20 = 1048576).
pub const MAX_IMEX_DIGITS: usize = 7;
/// IMEX channel numbers are below this (libnvidia-container's `parse_imex_info` bound).
pub const IMEX_CHANNEL_LIMIT: u32 = 1 << 20;

/// The IMEX channels a container asks for (`NVIDIA_IMEX_CHANNELS`, `imex/<n>`
/// volume mounts, `nvidia.com/imex-channel=<n>` annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImexChannels {
    #[default]
    None,
    /// Every channel the host has (`/dev/nvidia-caps-imex-channels/channel*`).
    All,
    /// These channel numbers, ascending, each once.
    Channels(Vec<u32>),
}

/// Parses an IMEX channel list: comma-separated, trimmed, empty entries skipped;
/// `void` anywhere or `none` first is no channel, `all` first is every host channel
/// (as in the device list); otherwise plain decimals below [`IMEX_CHANNEL_LIMIT`].
pub fn parse_imex_channels(value: Option<&str>) -> Result<ImexChannels, RequestError> {
    let Some(value) = value else { return Ok(ImexChannels::None) };
    let entries = || value.split(',').map(str::trim).filter(|e| !e.is_empty());
    if entries().any(|e| e.eq_ignore_ascii_case("void")) {
        return Ok(ImexChannels::None);
    }
    match entries().find(|e| e.eq_ignore_ascii_case("all") || e.eq_ignore_ascii_case("none")) {
        Some(e) if e.eq_ignore_ascii_case("all") => return Ok(ImexChannels::All),
        Some(_) => return Ok(ImexChannels::None),
        None => {}
    }
    let mut channels = std::collections::BTreeSet::new();
    for e in entries() {
        let err = |reason| RequestError::ImexChannel { entry: shown(e), reason };
        let n = parse_decimal(e, MAX_IMEX_DIGITS).ok_or_else(|| err("not a channel number"))?;
        let n =
            n.filter(|n| *n < IMEX_CHANNEL_LIMIT).ok_or_else(|| err("out of range (channels are below 1048576)"))?;
        if channels.insert(n) && channels.len() > MAX_DEVICES {
            return Err(RequestError::TooManyDevices { entry: shown(e), limit: MAX_DEVICES });
        }
    }
    if channels.is_empty() {
        return Ok(ImexChannels::None);
    }
    Ok(ImexChannels::Channels(channels.into_iter().collect()))
}

/// Everything a container asks for: devices, capabilities, MIG management access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub devices: DeviceList,
    pub capabilities: DriverCapabilities,
    /// `NVIDIA_MIG_CONFIG_DEVICES=all`: the mig-config cap plus every GI/CI cap of the selected GPUs.
    pub mig_config: bool,
    /// `NVIDIA_MIG_MONITOR_DEVICES=all`: the mig-monitor cap plus every GI/CI cap of the selected GPUs.
    pub mig_monitor: bool,
    /// IMEX channels: their nodes under `/dev/nvidia-caps-imex-channels/`.
    pub imex_channels: ImexChannels,
}

/// The raw values a request is built from, wherever they came from.
#[derive(Debug, Clone, Default)]
pub struct RawRequest<'a> {
    pub visible_devices: Option<&'a str>,
    pub driver_capabilities: Option<&'a str>,
    pub mig_config: Option<&'a str>,
    pub mig_monitor: Option<&'a str>,
    /// CAP_SYS_ADMIN in the container's bounding set.
    pub privileged: bool,
    /// An IMEX channel list ([`parse_imex_channels`]), from whichever source named it.
    pub imex_channels: Option<&'a str>,
}

impl Request {
    pub fn parse(raw: &RawRequest<'_>, default_capabilities: &DriverCapabilities) -> Result<Request, RequestError> {
        let devices = parse_device_list(raw.visible_devices)?;
        let capabilities = match raw.driver_capabilities.map(str::trim).filter(|s| !s.is_empty()) {
            Some(caps) => DriverCapabilities::parse(caps)?,
            None => default_capabilities.clone(),
        };
        let mig_access = |var: &'static str, value: Option<&str>| -> Result<bool, RequestError> {
            match value.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(false),
                Some(v) if !v.eq_ignore_ascii_case("all") => Err(RequestError::MigAccessValue { var, value: shown(v) }),
                Some(_) if !raw.privileged => Err(RequestError::MigAccessUnprivileged { var }),
                Some(_) => Ok(true),
            }
        };
        Ok(Request {
            devices,
            capabilities,
            mig_config: mig_access("NVIDIA_MIG_CONFIG_DEVICES", raw.mig_config)?,
            mig_monitor: mig_access("NVIDIA_MIG_MONITOR_DEVICES", raw.mig_monitor)?,
            imex_channels: parse_imex_channels(raw.imex_channels)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> DeviceId {
        parse_entry(text).unwrap()
    }
    fn err(text: &str) -> String {
        parse_entry(text).unwrap_err().to_string()
    }
    fn list(value: &str) -> DeviceList {
        parse_device_list(Some(value)).unwrap()
    }
    const U: &str = "5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77";

    #[test]
    fn gpu_index() {
        assert_eq!(one("0"), DeviceId::Index(0));
        assert_eq!(one("7"), DeviceId::Index(7));
        assert_eq!(one("007"), DeviceId::Index(7));
    }

    #[test]
    fn mig_index() {
        assert_eq!(one("0:1"), DeviceId::MigIndex { gpu: 0, slot: 1 });
        assert_eq!(one("12:6"), DeviceId::MigIndex { gpu: 12, slot: 6 });
    }

    #[test]
    fn gpu_uuid_any_case() {
        assert_eq!(one(&format!("GPU-{U}")), DeviceId::GpuUuid(format!("GPU-{U}")));
        assert_eq!(one(&format!("gpu-{}", U.to_uppercase())), DeviceId::GpuUuid(format!("GPU-{U}")));
    }

    #[test]
    fn mig_uuid() {
        assert_eq!(one(&format!("MIG-{U}")), DeviceId::MigUuid(format!("MIG-{U}")));
    }

    #[test]
    fn legacy_mig_name() {
        assert_eq!(
            one(&format!("MIG-GPU-{U}/7/0")),
            DeviceId::LegacyMig { gpu_uuid: format!("GPU-{U}"), gi: 7, ci: 0 }
        );
    }

    #[test]
    fn pci_bus_ids() {
        let p = PciBusId { domain: 0, bus: 0x3b, device: 0, function: 0 };
        assert_eq!(one("0000:3b:00.0"), DeviceId::PciBusId(p));
        assert_eq!(one("0000:3B:00.0"), DeviceId::PciBusId(p));
        assert_eq!(one("3b:00.0"), DeviceId::PciBusId(p));
        assert_eq!(one("00000000:3b:00.0"), DeviceId::PciBusId(p));
        assert_eq!(p.to_string(), "00000000:3b:00.0");
    }

    #[test]
    fn strict_forms_are_errors() {
        assert_eq!(err("abc"), "abc: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("0:1:2"), "0:1:2: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("-1"), "-1: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("1abc"), "1abc: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("0:"), "0:: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("+1"), "+1: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("0000:3b:00.8"), "0000:3b:00.8: not a GPU index, UUID, PCI bus id or MIG device");
    }

    #[test]
    fn malformed_uuids_name_the_entry() {
        assert!(err("GPU-1234").starts_with("GPU-1234: malformed GPU UUID"));
        assert!(err("MIG-abc").starts_with("MIG-abc: malformed MIG UUID"));
        assert!(err(&format!("GPU-{U}x")).contains("malformed GPU UUID"));
        assert!(err("MIG-GPU-abc/1/0").contains("malformed GPU UUID in legacy MIG name"));
        assert!(err(&format!("MIG-GPU-{U}/1")).contains("must be MIG-GPU-<uuid>/<gi>/<ci>"));
        assert!(err(&format!("MIG-GPU-{U}/1/x")).contains("must be MIG-GPU-<uuid>/<gi>/<ci>"));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(err("99999999999"), "99999999999: GPU index out of range");
        assert_eq!(err("0:99999999999"), "0:99999999999: MIG index out of range");
    }

    #[test]
    fn a_listed_entry_is_kept_in_its_shown_form() {
        // Before the digit bound this spelt GPU 9 (and was kept cut); now it is out of range,
        // and the error echoes the cut form.
        let long = format!("{}9", "0".repeat(1_000_000));
        let e = parse_device_list(Some(&long)).unwrap_err().to_string();
        assert!(e.len() < 140 && e.ends_with("... (1000001 bytes): GPU index out of range"), "{e}");
        // A long entry that is kept (a device it names) is kept in its shown form.
        let DeviceList::Devices(d) = list(&format!("GPU-{U}")) else { panic!() };
        assert_eq!(d[0].text, format!("GPU-{U}"));
    }

    #[test]
    fn numbers_are_bounded_by_their_digits() {
        assert_eq!(one("999"), DeviceId::Index(999));
        assert_eq!(one("000"), DeviceId::Index(0));
        assert_eq!(err("0009"), "0009: GPU index out of range");
        assert_eq!(err("1000"), "1000: GPU index out of range");
        assert_eq!(one("007:006"), DeviceId::MigIndex { gpu: 7, slot: 6 });
        assert_eq!(err("0000:1"), "0000:1: MIG index out of range");
        assert_eq!(err("0:0001"), "0:0001: MIG index out of range");
        assert_eq!(
            one(&format!("MIG-GPU-{U}/13/07")),
            DeviceId::LegacyMig { gpu_uuid: format!("GPU-{U}"), gi: 13, ci: 7 }
        );
        assert!(
            err(&format!("MIG-GPU-{U}/001/0")).ends_with(": GPU/compute instance id out of range (at most 2 digits)")
        );
        assert!(
            err(&format!("MIG-GPU-{U}/1/100")).ends_with(": GPU/compute instance id out of range (at most 2 digits)")
        );
        // A million digits is one short error, not a u32 parse of a million bytes.
        let e = err(&format!("0:{}", "0".repeat(1_000_000)));
        assert!(e.len() < 140 && e.ends_with("... (1000002 bytes): MIG index out of range"), "{e}");
    }

    #[test]
    fn distinct_devices_are_limited_and_repeats_are_free() {
        // MAX_DEVICES distinct MIG indexes are fine; one more names the entry and the limit.
        let at_limit: Vec<String> = (0..MAX_DEVICES).map(|n| format!("{}:{}", n / 1000, n % 1000)).collect();
        let DeviceList::Devices(e) = list(&at_limit.join(",")) else { panic!() };
        assert_eq!(e.len(), MAX_DEVICES);
        let over = format!("{},999:999", at_limit.join(","));
        assert_eq!(
            parse_device_list(Some(&over)).unwrap_err().to_string(),
            "999:999: more than 4096 distinct devices in one request"
        );
        // Two million copies of one device (4 MB) are one device; repeats never count.
        let copies = format!("{},0:1", vec!["0"; 2_000_000].join(","));
        let DeviceList::Devices(e) = list(&copies) else { panic!() };
        assert_eq!(
            e.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&DeviceId::Index(0), &DeviceId::MigIndex { gpu: 0, slot: 1 }]
        );
    }

    #[test]
    fn special_values_still_win_over_bad_entries() {
        // The two passes keep the old precedence: void anywhere, else the first of all/none.
        assert_eq!(list("bad,void"), DeviceList::Void);
        assert_eq!(list("bad,none,all"), DeviceList::None);
        assert_eq!(list("1000,ALL"), DeviceList::All);
    }

    #[test]
    fn special_values() {
        assert_eq!(parse_device_list(None).unwrap(), DeviceList::Void);
        assert_eq!(list(""), DeviceList::Void);
        assert_eq!(list(" , ,"), DeviceList::Void);
        assert_eq!(list("void"), DeviceList::Void);
        assert_eq!(list("0,void"), DeviceList::Void);
        assert_eq!(list("all"), DeviceList::All);
        assert_eq!(list("0, all"), DeviceList::All);
        assert_eq!(list("none"), DeviceList::None);
    }

    #[test]
    fn entries_are_trimmed_and_empty_ones_skipped() {
        let DeviceList::Devices(e) = list(" 0 ,, 1:2 ,") else { panic!() };
        assert_eq!(e.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["0", "1:2"]);
    }

    #[test]
    fn exact_duplicates_collapse() {
        let DeviceList::Devices(e) = list("0,0,1,0") else { panic!() };
        assert_eq!(e.len(), 2);
        let DeviceList::Devices(e) = list(&format!("GPU-{U},gpu-{}", U.to_uppercase())) else { panic!() };
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn odd_entries_are_escaped_and_cut_in_errors() {
        assert_eq!(
            err("a\nmighook: info: forged"),
            "\"a\\nmighook: info: forged\": not a GPU index, UUID, PCI bus id or MIG device"
        );
        let long = "x".repeat(100_000);
        let e = err(&long);
        assert!(e.len() < 160, "{e}");
        assert!(e.ends_with("... (100000 bytes): not a GPU index, UUID, PCI bus id or MIG device"), "{e}");
        assert_eq!(err("0 1"), "\"0 1\": not a GPU index, UUID, PCI bus id or MIG device");
    }

    #[test]
    fn a_hundred_thousand_entries_deduplicate() {
        let entries: Vec<String> = (0..100_000).map(|i| (i % 1000).to_string()).collect();
        let DeviceList::Devices(e) = list(&entries.join(",")) else { panic!() };
        assert_eq!(e.len(), 1000);
    }

    #[test]
    fn first_bad_entry_is_reported() {
        assert_eq!(
            parse_device_list(Some("0,bad,worse")).unwrap_err().to_string(),
            "bad: not a GPU index, UUID, PCI bus id or MIG device"
        );
    }

    #[test]
    fn cdi_names_of_gpu_kinds_name_the_same_devices() {
        assert_eq!(one("nvidia.com/gpu=0"), DeviceId::Index(0));
        assert_eq!(one("nvidia.com/gpu=0:1"), DeviceId::MigIndex { gpu: 0, slot: 1 });
        assert_eq!(one(&format!("nvidia.com/gpu=MIG-{U}")), DeviceId::MigUuid(format!("MIG-{U}")));
        assert_eq!(one(&format!("nvidia.com/gpu=GPU-{U}")), DeviceId::GpuUuid(format!("GPU-{U}")));
        assert_eq!(
            one(&format!("runtime.nvidia.com/gpu=MIG-GPU-{U}/7/0")),
            DeviceId::LegacyMig { gpu_uuid: format!("GPU-{U}"), gi: 7, ci: 0 }
        );
        assert_eq!(one("k8s.device-plugin.nvidia.com/gpu=3"), DeviceId::Index(3));
        assert_eq!(one("management.nvidia.com/gpu=1:2"), DeviceId::MigIndex { gpu: 1, slot: 2 });
    }

    #[test]
    fn cdi_all_is_all_and_repeats_of_a_device_collapse() {
        assert_eq!(list("nvidia.com/gpu=all"), DeviceList::All);
        assert_eq!(list("nvidia.com/gpu=0, k8s.device-plugin.nvidia.com/gpu=all"), DeviceList::All);
        assert_eq!(list("management.nvidia.com/gpu=all"), DeviceList::All);
        assert_eq!(list("nvidia.com/gpu=all,void"), DeviceList::Void);
        let DeviceList::Devices(e) = list("nvidia.com/gpu=0:1,0:1,k8s.device-plugin.nvidia.com/gpu=0:1") else {
            panic!()
        };
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].text, "nvidia.com/gpu=0:1");
    }

    #[test]
    fn other_cdi_kinds_are_errors_naming_the_kind() {
        let served =
            "nvidia.com/gpu, k8s.device-plugin.nvidia.com/gpu, management.nvidia.com/gpu, runtime.nvidia.com/gpu";
        assert_eq!(
            err("vendor.com/fpga=0"),
            format!("vendor.com/fpga=0: CDI kind vendor.com/fpga is not one mighook serves (it serves {served})")
        );
        assert_eq!(
            err("k8s.device-plugin.nvidia.com/gds=all"),
            format!(
                "k8s.device-plugin.nvidia.com/gds=all: CDI kind k8s.device-plugin.nvidia.com/gds is not one mighook serves (it serves {served})"
            )
        );
        assert_eq!(
            err("nvidia.com/imex-channel=0"),
            "nvidia.com/imex-channel=0: IMEX channels are asked for with NVIDIA_IMEX_CHANNELS, not in the device list"
        );
    }

    #[test]
    fn bad_cdi_names_are_errors_naming_the_whole_entry() {
        assert_eq!(err("nvidia.com/gpu=9999"), "nvidia.com/gpu=9999: GPU index out of range");
        assert_eq!(err("nvidia.com/gpu=bad"), "nvidia.com/gpu=bad: not a GPU index, UUID, PCI bus id or MIG device");
        assert_eq!(err("nvidia.com/gpu=none"), "nvidia.com/gpu=none: not a GPU index, UUID, PCI bus id or MIG device");
        assert!(err("nvidia.com/gpu=MIG-abc").starts_with("nvidia.com/gpu=MIG-abc: malformed MIG UUID"));
        assert_eq!(
            err("nvidia.com/gpu=0000:3b:00.0"),
            "nvidia.com/gpu=0000:3b:00.0: a PCI bus id is not a CDI device name (use the index or UUID)"
        );
        assert_eq!(err("gpu=0"), "gpu=0: a CDI device name is <vendor>/<class>=<name>");
        assert_eq!(err("nvidia.com/gpu="), "nvidia.com/gpu=: a CDI device name is <vendor>/<class>=<name>");
        assert_eq!(err("/gpu=0"), "/gpu=0: a CDI device name is <vendor>/<class>=<name>");
        assert_eq!(err("nvidia.com/a/b=0"), "nvidia.com/a/b=0: a CDI device name is <vendor>/<class>=<name>");
        assert_eq!(err("nvidia.com/gpu=0=1"), "nvidia.com/gpu=0=1: not a GPU index, UUID, PCI bus id or MIG device");
    }

    #[test]
    fn nvidia_kinds_are_told_from_other_vendors() {
        assert!(is_nvidia_kind("nvidia.com/gpu"));
        assert!(is_nvidia_kind("k8s.device-plugin.nvidia.com/gds"));
        assert!(!is_nvidia_kind("notnvidia.com/gpu"));
        assert!(!is_nvidia_kind("vendor.com/nvidia.com"));
    }

    #[test]
    fn a_volume_mount_list_without_volume_mounts_says_so() {
        assert_eq!(
            err("/var/run/nvidia-container-devices"),
            "/var/run/nvidia-container-devices: a volume-mounts device list (the device plugin's strategy), but accept-volume-mounts is off"
        );
    }

    fn imex(value: &str) -> ImexChannels {
        parse_imex_channels(Some(value)).unwrap()
    }
    fn imex_err(value: &str) -> String {
        parse_imex_channels(Some(value)).unwrap_err().to_string()
    }

    #[test]
    fn imex_channel_lists() {
        assert_eq!(parse_imex_channels(None).unwrap(), ImexChannels::None);
        assert_eq!(imex(""), ImexChannels::None);
        assert_eq!(imex("0,3"), ImexChannels::Channels(vec![0, 3]));
        assert_eq!(imex(" 3 ,0,,3"), ImexChannels::Channels(vec![0, 3]));
        assert_eq!(imex("1048575"), ImexChannels::Channels(vec![1048575]));
        assert_eq!(imex("all"), ImexChannels::All);
        assert_eq!(imex("0,ALL"), ImexChannels::All);
        assert_eq!(imex("none,all"), ImexChannels::None);
        assert_eq!(imex("all,void"), ImexChannels::None);
        assert_eq!(imex(" , "), ImexChannels::None);
    }

    #[test]
    fn bad_imex_channels_are_errors_naming_them() {
        assert_eq!(imex_err("0,x"), "IMEX channel x: not a channel number");
        assert_eq!(imex_err("-1"), "IMEX channel -1: not a channel number");
        assert_eq!(imex_err("channel0"), "IMEX channel channel0: not a channel number");
        assert_eq!(imex_err("1048576"), "IMEX channel 1048576: out of range (channels are below 1048576)");
        assert_eq!(imex_err("00000001"), "IMEX channel 00000001: out of range (channels are below 1048576)");
    }

    #[test]
    fn imex_channels_reach_the_request() {
        let raw = RawRequest { visible_devices: Some("0"), imex_channels: Some("2,1"), ..Default::default() };
        let r = Request::parse(&raw, &DriverCapabilities::default()).unwrap();
        assert_eq!(r.imex_channels, ImexChannels::Channels(vec![1, 2]));
    }

    fn raw<'a>(mig_config: Option<&'a str>, privileged: bool) -> RawRequest<'a> {
        RawRequest { visible_devices: Some("0"), mig_config, privileged, ..Default::default() }
    }

    #[test]
    fn mig_config_needs_privilege() {
        let d = DriverCapabilities::default();
        assert!(Request::parse(&raw(Some("all"), true), &d).unwrap().mig_config);
        assert_eq!(
            Request::parse(&raw(Some("all"), false), &d).unwrap_err().to_string(),
            "NVIDIA_MIG_CONFIG_DEVICES: needs a privileged container (CAP_SYS_ADMIN in the bounding set)"
        );
        assert_eq!(
            Request::parse(&raw(Some("0"), true), &d).unwrap_err().to_string(),
            "NVIDIA_MIG_CONFIG_DEVICES=0: only 'all' is supported"
        );
        assert!(!Request::parse(&raw(Some(""), false), &d).unwrap().mig_config);
    }

    #[test]
    fn empty_capabilities_fall_back_to_the_default() {
        let d = DriverCapabilities::default();
        let r = RawRequest { visible_devices: Some("0"), driver_capabilities: Some(""), ..Default::default() };
        assert_eq!(Request::parse(&r, &d).unwrap().capabilities, d);
    }
}
