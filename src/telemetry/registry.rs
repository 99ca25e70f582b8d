//! The one way this crate builds a Prometheus registry: the process's own
//! resources under their conventional unprefixed names ([`ProcessCollector`]),
//! `<prefix>_build_info`, then the program's metrics under `<prefix>_`. The
//! broker (`backchannel_`) and the agent (`backchannel_agent_`) both use it,
//! so that their endpoints can be graphed side by side.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::process::ProcessCollector;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// A registry and its text exposition.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// A registry with the process collector and `<prefix>_build_info`;
    /// `register` adds the program's own metrics under `<prefix>_`.
    pub fn new(prefix: &str, register: impl FnOnce(&mut Registry)) -> Exposition {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let prefixed = registry.sub_registry_with_prefix(prefix);
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        prefixed.register(
            "build_info",
            "Always 1; the version label names the running build",
            build_info,
        );
        register(prefixed);
        Exposition { registry }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

/// Register metrics in `registry` as a table, one line each:
/// `register!(r, field => "name", "help"; ...)` registers a clone of
/// `field` (the clone shares its value) as `name` with its help text.
macro_rules! register {
    ($registry:expr, $($metric:expr => $name:literal, $help:literal;)*) => {
        $($registry.register($name, $help, $metric.clone());)*
    };
}
pub(crate) use register;
