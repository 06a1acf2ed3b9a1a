//! Facts of the simulated a100x8 node that several test files assert against.

/// `0:1`: GPU 0 (device minor 2), slot 1 = GPU instance 8, compute instance 0.
pub const MIG_0_1_UUID: &str = "MIG-c7384736-a75d-5afc-978f-d2f1294409fd";

/// The six nodes a `0:1` container gets: caps 345/346 = 3 + 2*135 + 8*9 (+1).
pub const MIG_0_1_NODES: [(&str, u32, u32); 6] = [
    ("/dev/nvidiactl", 195, 255),
    ("/dev/nvidia-uvm", 511, 0),
    ("/dev/nvidia-uvm-tools", 511, 1),
    ("/dev/nvidia2", 195, 2),
    ("/dev/nvidia-caps/nvidia-cap345", 508, 345),
    ("/dev/nvidia-caps/nvidia-cap346", 508, 346),
];
