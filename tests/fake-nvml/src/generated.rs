//! Generated topologies that are too large to write by hand. The committed
//! JSON is checked against these functions by a unit test, so the file and
//! its generator cannot drift apart (`FAKE_NVML_BLESS=1` rewrites it).

use std::collections::BTreeMap;

use crate::topology::{Gpu, MigDevice, MigMode, Topology};

/// `a100x32.json`: 32 A100s, minors 0..31 in reversed order, even NVML
/// indexes MIG enabled with 7 x 1g.5gb (GI 7..13), odd ones disabled.
pub fn a100x32() -> Topology {
    let gpus = (0..32u32)
        .map(|i| {
            let enabled = i % 2 == 0;
            let mig_devices = if enabled {
                (0..7u32)
                    .map(|slot| MigDevice {
                        slot,
                        gi: 7 + slot,
                        ci: 0,
                        uuid: uuid("MIG", 1000 + u64::from(i) * 16 + u64::from(slot), true),
                        profile: "1g.5gb".into(),
                        gi_profile_id: 19,
                        ci_profile_id: 0,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Gpu {
                minor: 31 - i,
                uuid: uuid("GPU", u64::from(i), false),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x10 + i * 4),
                name: "NVIDIA A100-SXM4-40GB".into(),
                mig_mode: if enabled { MigMode::Enabled } else { MigMode::Disabled },
                pending_mig_mode: None,
                max_mig_devices: 7,
                mig_devices,
                brand: None,
                compute_capability: None,
            }
        })
        .collect();
    Topology {
        driver_version: "550.54.15".into(),
        cuda_driver_version: 12040,
        nvml_version: "12.550.54.15".into(),
        chardev_majors: BTreeMap::from([
            ("nvidia-caps".to_string(), 508),
            ("nvidia-caps-imex-channels".to_string(), 509),
            ("nvidia-uvm".to_string(), 511),
        ]),
        gpus,
        failures: Vec::new(),
        imex_channels: Vec::new(),
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A fixed, random-looking UUID; MIG ones carry version 5 and the RFC 4122
/// variant like the driver's.
fn uuid(prefix: &str, seed: u64, mig: bool) -> String {
    let a = splitmix64(seed ^ 0x6d69_6768_6f6f_6b00);
    let b = splitmix64(a);
    let (mut g3, mut g4) = ((a & 0xffff) as u16, (b >> 48) as u16);
    if mig {
        g3 = 0x5000 | (g3 & 0x0fff);
        g4 = 0x8000 | (g4 & 0x3fff);
    }
    format!("{prefix}-{:08x}-{:04x}-{g3:04x}-{g4:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, b & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::topology;

    #[test]
    fn a100x32_file_matches_generator() {
        let path = topology("a100x32.json");
        if std::env::var_os("FAKE_NVML_BLESS").is_some() {
            std::fs::write(&path, a100x32().to_json()).unwrap();
        }
        let committed = Topology::load(&path).unwrap();
        assert_eq!(committed, a100x32(), "{} is stale: rerun with FAKE_NVML_BLESS=1", path.display());
    }

    #[test]
    fn a100x32_shape() {
        let t = a100x32();
        assert_eq!(t.gpus.len(), 32);
        assert_eq!(t.gpus[0].minor, 31);
        assert_eq!(t.gpus[31].minor, 0);
        assert_eq!(t.gpus.iter().filter(|g| g.mig_mode == MigMode::Enabled).count(), 16);
        assert_eq!(t.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>(), 16 * 7);
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn mig_uuids_look_like_the_drivers() {
        let u = uuid("MIG", 7, true);
        assert_eq!(u.len(), "MIG-c7384736-a75d-5afc-978f-d2f1294409fd".len());
        assert_eq!(&u[18..19], "5");
        assert!("89ab".contains(&u[23..24]), "{u}");
    }
}
