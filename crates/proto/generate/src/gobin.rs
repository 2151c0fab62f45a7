//! Reads the Go struct definitions of the Kubernetes API types out of a kubectl binary.
//!
//! The protobuf schema says which fields exist, but not how Go's `encoding/json` prints
//! them: whether a field is a pointer (a present zero value is printed) or a plain value
//! with `omitempty` (a zero value is dropped, yet gogo-protobuf always encodes it). A Go
//! program keeps, for reflection, every struct type it can encode: field names, struct
//! tags (`json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"`) and field
//! types. The same tags carry what strategic merge patch needs (`patchStrategy:"merge"
//! patchMergeKey:"name"`). This module walks those runtime type descriptors (Go's
//! `internal/abi` layout for 64-bit little-endian targets, stable since Go 1.21) starting
//! from the `.typelink` section.
//!
//! It must never guess: anything that does not parse as the layout expects is an error.

use std::collections::{HashMap, HashSet};

/// One Go struct with at least one `protobuf` tag.
#[derive(Debug)]
pub struct GoStruct {
    /// Import path, e.g. `k8s.io/api/core/v1`.
    pub pkg: String,
    pub name: String,
    pub fields: Vec<GoField>,
}

#[derive(Debug, Clone)]
pub struct GoField {
    /// The JSON name, `None` for `json:"-"` and for embedded fields without a name.
    pub json: Option<String>,
    pub omitempty: bool,
    /// Embedded, or tagged `json:",inline"`: its fields are printed in the outer object.
    pub inline: bool,
    pub pointer: bool,
    /// Field number from the `protobuf` tag.
    pub number: Option<u32>,
    /// The `patchStrategy` tag (`merge`, `retainKeys`, `merge,retainKeys`, `replace`):
    /// how a strategic merge patch treats the field.
    pub patch_strategy: Option<String>,
    /// The `patchMergeKey` tag: the field that identifies an item of a merged list.
    pub patch_merge_key: Option<String>,
}

const KIND_ARRAY: u8 = 17;
const KIND_MAP: u8 = 21;
const KIND_POINTER: u8 = 22;
const KIND_SLICE: u8 = 23;
const KIND_STRUCT: u8 = 25;
const TFLAG_UNCOMMON: u8 = 1;
const TFLAG_EXTRA_STAR: u8 = 2;
const NAME_HAS_TAG: u8 = 1 << 1;
const NAME_EMBEDDED: u8 = 1 << 3;

struct Section {
    addr: u64,
    offset: usize,
    size: usize,
}

struct Image {
    data: Vec<u8>,
    sections: HashMap<String, Section>,
    /// `moduledata.types`: name and type offsets are relative to it.
    types: u64,
}

impl Image {
    fn open(path: &str) -> Result<Image, String> {
        let data = std::fs::read(path).map_err(|e| format!("read {path}: {e}"))?;
        if data.get(..6) != Some(b"\x7fELF\x02\x01") {
            return Err(format!("{path}: not a 64-bit little-endian ELF file"));
        }
        let le16 = |at: usize| data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let le32 =
            |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let le64 =
            |at: usize| data.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        let bad = || format!("{path}: truncated ELF header");
        let shoff = le64(0x28).ok_or_else(bad)? as usize;
        let shentsize = le16(0x3a).ok_or_else(bad)? as usize;
        let shnum = le16(0x3c).ok_or_else(bad)? as usize;
        let shstrndx = le16(0x3e).ok_or_else(bad)? as usize;
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            let name = le32(h).ok_or_else(bad)?;
            let kind = le32(h + 4).ok_or_else(bad)?;
            let addr = le64(h + 0x10).ok_or_else(bad)?;
            let offset = le64(h + 0x18).ok_or_else(bad)? as usize;
            let size = le64(h + 0x20).ok_or_else(bad)? as usize;
            raw.push((name, kind, Section { addr, offset, size }));
        }
        let strtab = raw.get(shstrndx).ok_or_else(bad)?.2.offset;
        let mut sections = HashMap::new();
        for (name, kind, section) in raw {
            let start = strtab + name as usize;
            let end = data[start..].iter().position(|&b| b == 0).ok_or_else(bad)? + start;
            // SHT_NOBITS sections have no bytes in the file.
            if kind != 8 {
                sections.insert(String::from_utf8_lossy(&data[start..end]).into_owned(), section);
            }
        }
        // The Go linker starts the type data (runtime.types) at the start of .rodata.
        let types = sections.get(".rodata").ok_or_else(|| format!("{path}: no .rodata"))?.addr;
        Ok(Image { data, sections, types })
    }

    fn bytes(&self, addr: u64, len: usize) -> Result<&[u8], String> {
        for s in self.sections.values() {
            if s.addr != 0 && addr >= s.addr && addr + len as u64 <= s.addr + s.size as u64 {
                let at = s.offset + (addr - s.addr) as usize;
                return self
                    .data
                    .get(at..at + len)
                    .ok_or_else(|| format!("address {addr:#x} past end of file"));
            }
        }
        Err(format!("address {addr:#x} is in no section"))
    }

    fn u8(&self, addr: u64) -> Result<u8, String> {
        Ok(self.bytes(addr, 1)?[0])
    }

    fn u64(&self, addr: u64) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(addr, 8)?.try_into().unwrap()))
    }

    fn i32(&self, addr: u64) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.bytes(addr, 4)?.try_into().unwrap()))
    }

    /// An `abi.Name`: flags, varint length, bytes, then (if tagged) varint length and tag.
    fn name(&self, addr: u64) -> Result<(u8, String, String), String> {
        let flags = self.u8(addr)?;
        let (len, at) = self.varint(addr + 1)?;
        let name = String::from_utf8_lossy(self.bytes(at, len)?).into_owned();
        let mut tag = String::new();
        if flags & NAME_HAS_TAG != 0 {
            let (tag_len, tag_at) = self.varint(at + len as u64)?;
            tag = String::from_utf8_lossy(self.bytes(tag_at, tag_len)?).into_owned();
        }
        Ok((flags, name, tag))
    }

    fn varint(&self, mut addr: u64) -> Result<(usize, u64), String> {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = self.u8(addr)?;
            addr += 1;
            value |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok((value, addr));
            }
            shift += 7;
            if shift > 28 {
                return Err(format!("overlong name length at {addr:#x}"));
            }
        }
    }

    fn offset_name(&self, off: i32) -> Result<String, String> {
        Ok(self.name(self.types.wrapping_add_signed(i64::from(off)))?.1)
    }

    fn kind(&self, t: u64) -> Result<u8, String> {
        Ok(self.u8(t + 23)? & 0x1f)
    }

    /// The type's string, such as `v1.Container` or `*v1.Probe`.
    fn type_string(&self, t: u64) -> Result<String, String> {
        let s = self.offset_name(self.i32(t + 40)?)?;
        let extra_star = self.u8(t + 20)? & TFLAG_EXTRA_STAR != 0;
        Ok(if extra_star { s[1..].to_string() } else { s })
    }

    /// Types this type refers to directly (element, key, field types).
    fn children(&self, t: u64) -> Result<Vec<u64>, String> {
        Ok(match self.kind(t)? {
            KIND_POINTER | KIND_SLICE | KIND_ARRAY => vec![self.u64(t + 48)?],
            KIND_MAP => vec![self.u64(t + 48)?, self.u64(t + 56)?],
            KIND_STRUCT => {
                let (ptr, len) = (self.u64(t + 56)?, self.u64(t + 64)?);
                (0..len).map(|i| self.u64(ptr + 24 * i + 8)).collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        })
    }
}

/// Every struct in the binary that has a field with a `protobuf` tag and lives in a
/// `k8s.io/` package.
pub fn read(path: &str) -> Result<Vec<GoStruct>, String> {
    let image = Image::open(path)?;
    let links =
        image.sections.get(".typelink").ok_or_else(|| format!("{path}: no .typelink section"))?;
    let mut stack = Vec::new();
    for chunk in image.data[links.offset..links.offset + links.size].chunks_exact(4) {
        let off = i32::from_le_bytes(chunk.try_into().unwrap());
        stack.push(image.types.wrapping_add_signed(i64::from(off)));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        stack.extend(image.children(t)?);
        if image.kind(t)? == KIND_STRUCT
            && let Some(s) = read_struct(&image, t)?
        {
            out.push(s);
        }
    }
    if out.len() < 100 {
        return Err(format!(
            "{path}: found only {} Kubernetes structs; is it a Go program?",
            out.len()
        ));
    }
    Ok(out)
}

fn read_struct(image: &Image, t: u64) -> Result<Option<GoStruct>, String> {
    if image.u8(t + 20)? & TFLAG_UNCOMMON == 0 {
        return Ok(None); // unnamed struct
    }
    let pkg = image.offset_name(image.i32(t + 80)?)?;
    if !pkg.starts_with("k8s.io/") {
        return Ok(None);
    }
    let type_string = image.type_string(t)?;
    let name = type_string.rsplit('.').next().unwrap_or_default().to_string();
    let (ptr, len) = (image.u64(t + 56)?, image.u64(t + 64)?);
    let mut fields = Vec::new();
    let mut any_protobuf = false;
    for i in 0..len {
        let at = ptr + 24 * i;
        let (flags, go_name, tag) = image.name(image.u64(at)?)?;
        let pointer = image.kind(image.u64(at + 8)?)? == KIND_POINTER;
        let json = lookup(&tag, "json");
        let protobuf = lookup(&tag, "protobuf");
        any_protobuf |= protobuf.is_some();
        let mut parts = json.as_deref().unwrap_or(&go_name).split(',');
        let json_name = parts.next().unwrap_or_default().to_string();
        let options: Vec<&str> = parts.collect();
        if options.contains(&"omitzero") && protobuf.is_some() {
            // Go 1.24's omitzero drops zero structs too; the decoder has no rule for it yet.
            return Err(format!("{pkg}.{type_string}.{go_name}: omitzero is not supported: {tag}"));
        }
        let embedded = flags & NAME_EMBEDDED != 0;
        let inline = options.contains(&"inline") || (embedded && json_name.is_empty());
        let json = match json_name.as_str() {
            "-" => None,
            "" if inline => None,
            "" => Some(go_name.clone()),
            _ => Some(json_name),
        };
        let number = protobuf.and_then(|p| p.split(',').nth(1).and_then(|n| n.parse().ok()));
        fields.push(GoField {
            json,
            omitempty: options.contains(&"omitempty"),
            inline,
            pointer,
            number,
            patch_strategy: lookup(&tag, "patchStrategy"),
            patch_merge_key: lookup(&tag, "patchMergeKey"),
        });
    }
    Ok(any_protobuf.then_some(GoStruct { pkg, name, fields }))
}

/// `reflect.StructTag.Lookup`: the value of `key:"value"` in a struct tag.
fn lookup(tag: &str, key: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        rest = rest.trim_start_matches(' ');
        let colon = rest.find(':')?;
        let name = &rest[..colon];
        let body = rest[colon + 1..].strip_prefix('"')?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        if name == key {
            return Some(body[..end].replace("\\\"", "\""));
        }
        rest = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_lookup() {
        let tag = r#"json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas""#;
        assert_eq!(super::lookup(tag, "json").as_deref(), Some("replicas,omitempty"));
        assert_eq!(super::lookup(tag, "protobuf").as_deref(), Some("varint,1,opt,name=replicas"));
        assert_eq!(super::lookup(tag, "yaml"), None);
    }
}
