//! Unit tests of the driver-file applier against the recording file-system fake.

use super::*;

#[test]
fn container_paths_must_be_absolute_and_plain() {
    assert!(split(Path::new("/usr/lib64/libcuda.so.1")).is_ok());
    for bad in ["usr/lib64/x", "/usr/../etc/x", "/"] {
        assert!(split(Path::new(bad)).is_err(), "{bad}");
    }
}
