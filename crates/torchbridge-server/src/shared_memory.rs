//! Triton's system shared-memory extension: a client on the same host puts tensors in a
//! POSIX shared-memory object, registers it as a named region, and names the region in
//! place of tensor data — for inputs the server reads, for outputs the server writes.
//!
//! Regions are read and written with `pread`/`pwrite` on the object's file, not mapped:
//! a client that shrinks or removes its object after registering it then gets an error
//! naming the region, where a mapping would take the server down with `SIGBUS`. Each
//! tensor costs one system call and one copy, which a mapping would also cost (the data
//! is copied into the tensor either way).
//!
//! Any client that can reach the server could otherwise read and overwrite every
//! shared-memory object of the server's user, so the extension is off unless the server
//! is started with `--allow-client-shm` (as Triton does).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::Serialize;
use torchbridge_core::{DataType, Error, Result};

use crate::Limits;

/// Where POSIX `shm_open` keeps its objects on Linux.
const SHM_DIR: &str = "/dev/shm";

/// The most regions registered at once. Each holds an open file, so without a bound
/// clients could exhaust the server's descriptors (often 1024) and fail every connection.
const MAX_REGIONS: usize = 256;

/// One registered region, as the status calls report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionStatus {
    pub name: String,
    /// The shared-memory object's key, as the client gave it (`/name`).
    pub key: String,
    /// Where the region starts in the object, in bytes.
    pub offset: u64,
    pub byte_size: u64,
}

/// Where a tensor's data lies: a registered region, and a span of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
    /// The region itself, once [`SharedMemory::bind`] found it: an output is written
    /// there even if the name is unregistered, or registered again for another object,
    /// while its request runs (as Triton keeps a region of a request in flight).
    pub bound: Option<BoundRegion>,
}

/// A registered region held by a request.
#[derive(Debug, Clone)]
pub struct BoundRegion(Arc<Region>);

impl PartialEq for BoundRegion {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BoundRegion {}

impl Placement {
    /// The placement a tensor's `shared_memory_region`, `shared_memory_byte_size` and
    /// `shared_memory_offset` parameters give; `None` when none is set. The region and
    /// the byte size go together; the offset defaults to zero.
    pub fn from_parameters(
        tensor: &str,
        region: Option<String>,
        byte_size: Option<u64>,
        offset: Option<u64>,
    ) -> Result<Option<Placement>> {
        match (region, byte_size) {
            (Some(region), Some(byte_size)) => Ok(Some(Placement {
                region,
                offset: offset.unwrap_or(0),
                byte_size,
                bound: None,
            })),
            (None, None) if offset.is_none() => Ok(None),
            _ => Err(invalid(format!(
                "tensor `{tensor}`: give `shared_memory_region` and `shared_memory_byte_size` \
                 together (and `shared_memory_offset` only with them)"
            ))),
        }
    }
}

#[derive(Debug)]
struct Region {
    status: RegionStatus,
    file: File,
}

/// The registered regions, shared by both transports.
#[derive(Debug, Default)]
pub struct SharedMemory {
    allowed: bool,
    regions: RwLock<HashMap<String, Arc<Region>>>,
}

fn invalid(message: String) -> Error {
    Error::InvalidInput(message)
}

impl SharedMemory {
    /// The registry; `allowed: false` refuses every registration.
    pub fn new(allowed: bool) -> Self {
        SharedMemory {
            allowed,
            regions: RwLock::default(),
        }
    }

    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Registers `byte_size` bytes at `offset` of the object `key` as region `name`.
    pub fn register(&self, name: &str, key: &str, offset: u64, byte_size: u64) -> Result<()> {
        if !self.allowed {
            return Err(invalid(
                "system shared memory is off on this server: start it with --allow-client-shm \
                 to let clients register regions"
                    .into(),
            ));
        }
        if name.is_empty() {
            return Err(invalid("a shared-memory region needs a name".into()));
        }
        let path = object_path(key)?;
        // Not through a symlink in /dev/shm (it could name any file the server may
        // write), and only a regular file: what shm_open makes.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| {
                invalid(format!(
                    "region `{name}`: cannot open shared-memory object `{key}`: {e}"
                ))
            })?;
        let metadata = file
            .metadata()
            .map_err(|e| invalid(format!("region `{name}`: cannot read `{key}`: {e}")))?;
        if !metadata.is_file() {
            return Err(invalid(format!(
                "region `{name}`: `{key}` is not a shared-memory object (not a regular file)"
            )));
        }
        let held = metadata.len();
        let end = offset.saturating_add(byte_size);
        if end > held {
            return Err(invalid(format!(
                "region `{name}`: shared-memory object `{key}` holds {held} bytes, fewer than \
                 offset {offset} + byte_size {byte_size}"
            )));
        }
        let mut regions = self.regions.write().expect("region lock poisoned");
        if regions.contains_key(name) {
            return Err(invalid(format!(
                "shared-memory region `{name}` is already registered; unregister it first"
            )));
        }
        if regions.len() >= MAX_REGIONS {
            return Err(invalid(format!(
                "region `{name}`: {MAX_REGIONS} shared-memory regions are registered, the \
                 most this server holds; unregister some first"
            )));
        }
        let status = RegionStatus {
            name: name.to_string(),
            key: key.to_string(),
            offset,
            byte_size,
        };
        regions.insert(name.to_string(), Arc::new(Region { status, file }));
        Ok(())
    }

    /// Unregisters region `name`, or every region when `None`. A name that is not
    /// registered is not an error (the region is gone either way), as in Triton.
    pub fn unregister(&self, name: Option<&str>) {
        let mut regions = self.regions.write().expect("region lock poisoned");
        match name {
            Some(name) => {
                regions.remove(name);
            }
            None => regions.clear(),
        }
    }

    /// The status of region `name`, or of every region (sorted by name) when `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>> {
        let regions = self.regions.read().expect("region lock poisoned");
        match name {
            Some(name) => regions
                .get(name)
                .map(|r| vec![r.status.clone()])
                .ok_or_else(|| self.unknown(name)),
            None => {
                let mut all: Vec<_> = regions.values().map(|r| r.status.clone()).collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(all)
            }
        }
    }

    /// The data of input `name` (`datatype`, `shape`), read from where `at` says: the
    /// byte size must be the shape's (fixed-size datatypes) and within the largest body
    /// the server takes, as if the data had come in the request.
    pub fn read_input(
        &self,
        name: &str,
        datatype: DataType,
        shape: &[i64],
        at: &Placement,
        limits: &Limits,
    ) -> Result<Bytes> {
        limits.check_shape(name, shape)?;
        if let Some(d) = shape.iter().find(|&&d| d < 0) {
            return Err(invalid(format!(
                "input `{name}`: shape {shape:?} has a negative dimension ({d})"
            )));
        }
        if let Some(width) = datatype.size() {
            let needed = shape
                .iter()
                .try_fold(width as u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
            if needed != Some(at.byte_size) {
                return Err(invalid(format!(
                    "input `{name}`: {datatype} shape {shape:?} needs {} bytes, \
                     shared_memory_byte_size is {}",
                    needed.map_or("too many".into(), |n| n.to_string()),
                    at.byte_size
                )));
            }
        }
        if at.byte_size > limits.max_body_bytes as u64 {
            return Err(invalid(format!(
                "input `{name}`: shared_memory_byte_size {} is over the {} bytes a request \
                 may carry (--max-body-bytes)",
                at.byte_size, limits.max_body_bytes
            )));
        }
        let data = self.read(name, at)?;
        limits.check_tensor(name, datatype, shape, &data)?;
        Ok(data)
    }

    /// Reads the data of `tensor` from where `at` says.
    pub fn read(&self, tensor: &str, at: &Placement) -> Result<Bytes> {
        let region = self.span(tensor, at)?;
        let mut data = vec![0; usize::try_from(at.byte_size).expect("checked by span")];
        region
            .file
            .read_exact_at(&mut data, region.status.offset + at.offset)
            .map_err(|e| self.io_failed(tensor, &region, "read", &e))?;
        Ok(data.into())
    }

    /// Finds the region of output `tensor` now, when its request is accepted, and
    /// checks the span: the reply is written there (see [`Placement::bound`]), and a
    /// region that is not registered fails the request before the model runs.
    pub fn bind(&self, tensor: &str, at: &mut Placement) -> Result<()> {
        at.bound = Some(BoundRegion(self.span(tensor, at)?));
        Ok(())
    }

    /// Writes `data`, the data of output `tensor`, where `at` says; it must fit.
    pub fn write(&self, tensor: &str, at: &Placement, data: &[u8]) -> Result<()> {
        let region = match &at.bound {
            Some(BoundRegion(region)) => region.clone(),
            None => self.span(tensor, at)?,
        };
        if data.len() as u64 > at.byte_size {
            return Err(invalid(format!(
                "output `{tensor}` is {} bytes, more than the {} bytes given it in \
                 shared-memory region `{}`",
                data.len(),
                at.byte_size,
                at.region
            )));
        }
        region
            .file
            .write_all_at(data, region.status.offset + at.offset)
            .map_err(|e| self.io_failed(tensor, &region, "write", &e))
    }

    /// The region `at` names, once `at`'s span is checked to lie inside it.
    fn span(&self, tensor: &str, at: &Placement) -> Result<Arc<Region>> {
        let region = self
            .regions
            .read()
            .expect("region lock poisoned")
            .get(&at.region)
            .cloned()
            .ok_or_else(|| self.unknown(&at.region))?;
        let end = at.offset.checked_add(at.byte_size);
        if end.is_none_or(|end| end > region.status.byte_size)
            || usize::try_from(at.byte_size).is_err()
        {
            return Err(invalid(format!(
                "tensor `{tensor}`: offset {} + byte size {} is past the end of shared-memory \
                 region `{}` ({} bytes)",
                at.offset, at.byte_size, at.region, region.status.byte_size
            )));
        }
        Ok(region)
    }

    fn unknown(&self, name: &str) -> Error {
        let hint = match self.allowed {
            true => "",
            false => " (system shared memory is off on this server: --allow-client-shm)",
        };
        invalid(format!(
            "no shared-memory region `{name}` is registered{hint}"
        ))
    }

    fn io_failed(&self, tensor: &str, region: &Region, what: &str, e: &std::io::Error) -> Error {
        let RegionStatus { name, key, .. } = &region.status;
        let why = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the object is shorter than it was registered".into()
            }
            _ => e.to_string(),
        };
        invalid(format!(
            "tensor `{tensor}`: cannot {what} shared-memory region `{name}` (object `{key}`): {why}"
        ))
    }
}

/// The file behind a POSIX shared-memory key: `/name` (or `name`) with no other `/`, as
/// `shm_open` takes it, so that a key cannot reach outside the shared-memory directory.
fn object_path(key: &str) -> Result<PathBuf> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
    {
        return Err(invalid(format!(
            "`{key}` is not a shared-memory key: give `/name`, with no other `/`"
        )));
    }
    Ok(PathBuf::from(SHM_DIR).join(name))
}

#[cfg(test)]
pub(crate) mod tests;
