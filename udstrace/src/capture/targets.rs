//! `--container`, `--pod` and `--path` kept up to date while a capture runs: containers that
//! start, socket files that appear or are replaced, handed to the kernel's filter maps (and
//! their names to the record filter).

use std::time::Duration;

use super::Packetizer;
use crate::{
    error::one_line,
    proc::{container_filter::ContainerFilter, path_filter::PathFilter},
    tracer::Tracer,
};

/// How often the cgroup hierarchy is walked again for containers that started.
pub(crate) const CONTAINER_REFRESH: Duration = Duration::from_secs(1);

/// How often each `--path` is looked at again (one `stat` each).
pub(crate) const PATH_REFRESH: Duration = Duration::from_millis(200);

/// What `--container`, `--pod` and `--path` name, found again during the capture.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    pub(crate) containers: Option<ContainerFilter>,
    pub(crate) paths: PathFilter,
    /// A filter map could not take more (said once).
    full: bool,
}

impl Targets {
    #[must_use]
    pub(crate) fn new(containers: Option<ContainerFilter>, paths: PathFilter) -> Self {
        Self {
            containers,
            paths,
            full: false,
        }
    }

    /// Whether there are containers to look for.
    #[must_use]
    pub(crate) fn has_containers(&self) -> bool {
        self.containers.is_some()
    }

    /// Whether there are paths to look at.
    #[must_use]
    pub(crate) fn has_paths(&self) -> bool {
        self.paths.has_paths()
    }

    /// Walks the cgroups again: new containers' cgroups go to the kernel.
    pub(crate) fn refresh_containers(&mut self, tracer: &mut Tracer) {
        let Some(containers) = self.containers.as_mut() else {
            return;
        };
        let found = containers.refresh();
        for appeared in &found.appeared {
            eprintln!(
                "udstrace: {} ({}) started: captured from now on",
                appeared.what,
                appeared
                    .container
                    .id
                    .get(..12)
                    .unwrap_or(&appeared.container.id)
            );
        }
        if !found.new_ids.is_empty() {
            if let Err(e) = tracer.add_cgroups(&found.new_ids) {
                self.say_full(&e);
            }
        }
    }

    /// Looks at the paths again: new socket files go to the kernel, the names their sockets
    /// were bound with to the record filter.
    pub(crate) fn refresh_paths(&mut self, tracer: &mut Tracer, packetizer: &mut Packetizer) {
        let new = self.paths.refresh();
        if new.is_empty() {
            return;
        }
        for file in &new {
            if let Some(value) = &file.appeared {
                eprintln!("udstrace: {value} appeared: captured from now on");
            }
        }
        let files: Vec<_> = new.iter().map(|f| f.file).collect();
        if let Err(e) = tracer.add_path_files(&files) {
            self.say_full(&e);
        }
        packetizer
            .filter_mut()
            .add_paths(new.into_iter().flat_map(|f| f.names));
    }

    fn say_full(&mut self, e: &crate::error::Error) {
        if !self.full {
            eprintln!(
                "udstrace: {} (what appears from now on is not captured)",
                one_line(e)
            );
            self.full = true;
        }
    }
}
