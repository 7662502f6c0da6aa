//! Steward's gRPC contracts. The only crate that owns generated code; every
//! service and the gateway depend on it.

pub mod codec;

/// The encoded `FileDescriptorSet` of every Steward proto, including
/// `google.protobuf` imports: served by reflection and read for method
/// policies.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/steward_descriptor.bin"));

pub mod steward {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("steward.common.v1");
        }
    }
    pub mod audit {
        pub mod v1 {
            tonic::include_proto!("steward.audit.v1");
        }
    }
    pub mod notifications {
        pub mod v1 {
            tonic::include_proto!("steward.notifications.v1");
        }
    }
    pub mod accounts {
        pub mod v1 {
            tonic::include_proto!("steward.accounts.v1");
        }
    }
    pub mod billing {
        pub mod v1 {
            tonic::include_proto!("steward.billing.v1");
        }
    }
    pub mod quotas {
        pub mod v1 {
            tonic::include_proto!("steward.quotas.v1");
        }
    }
}

pub use steward::billing::v1 as billing;
pub use steward::notifications::v1 as notifications;
pub use steward::quotas::v1 as quotas;
pub use steward::{accounts::v1 as accounts, audit::v1 as audit, common::v1 as common};
