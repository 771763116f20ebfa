//! Reads back the layout of a fragmented MP4 file: the tracks' timescales, the complete
//! fragments, the media they hold, and where the last complete fragment ends. Used to list files
//! this server did not write (an earlier run's, perhaps cut short by a crash) and by the crash
//! tests. Only the top-level boxes and the small `moov`/`moof` boxes are read; `mdat` bodies are
//! skipped.

use std::{
    collections::HashMap,
    io::{self, Read, Seek, SeekFrom},
};

/// A `moov` or `moof` larger than this is not one of ours; the scan stops there.
const MAX_HEADER_BOX: u64 = 16 * 1024 * 1024;

/// `tfhd` flags (ISO/IEC 14496-12 8.8.7).
const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_SAMPLE_DURATION: u32 = 0x08;
/// `trun` flags (8.8.8).
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x004;
const TRUN_SAMPLE_DURATION: u32 = 0x100;
const TRUN_SAMPLE_SIZE: u32 = 0x200;
const TRUN_SAMPLE_FLAGS: u32 = 0x400;
const TRUN_SAMPLE_CTS: u32 = 0x800;

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Bytes through the end of the last complete fragment (or of the init segment): a file cut
    /// here plays to its end.
    pub complete: u64,
    /// Complete `moof`+`mdat` pairs.
    pub fragments: usize,
    /// Seconds of media in the complete fragments: from the earliest start to the latest end
    /// over all tracks.
    pub duration: f64,
}

/// Scans `len` bytes of `reader` from its start.
pub fn scan<R: Read + Seek>(mut reader: R, len: u64) -> io::Result<Layout> {
    let mut layout = Layout::default();
    let mut timescales: HashMap<u32, u32> = HashMap::new();
    // Per track: (earliest start, latest end) in the track's timescale.
    let mut spans: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut pos = 0u64;
    while let Some((kind, header, size)) = box_at(&mut reader, pos, len)? {
        match &kind {
            b"moov" | b"moof" if size > MAX_HEADER_BOX => break,
            b"moov" => {
                let body = read_body(&mut reader, pos + header, size - header)?;
                timescales = track_timescales(&body);
                layout.complete = pos + size;
            }
            b"moof" => {
                let mdat_at = pos + size;
                match box_at(&mut reader, mdat_at, len)? {
                    Some((mdat, _, mdat_size)) if &mdat == b"mdat" => {
                        let body = read_body(&mut reader, pos + header, size - header)?;
                        for (track, start, duration) in fragment_runs(&body) {
                            let span = spans.entry(track).or_insert((start, start));
                            span.0 = span.0.min(start);
                            span.1 = span.1.max(start + duration);
                        }
                        layout.fragments += 1;
                        pos = mdat_at + mdat_size;
                        layout.complete = pos;
                        continue;
                    }
                    _ => break, // the fragment's mdat is missing or cut short
                }
            }
            b"ftyp" => layout.complete = pos + size,
            _ => {}
        }
        pos += size;
    }
    let seconds = |(track, ticks): (&u32, u64)| {
        let scale = f64::from(*timescales.get(track).unwrap_or(&90_000).max(&1));
        ticks as f64 / scale
    };
    let start = spans
        .iter()
        .map(|(t, s)| seconds((t, s.0)))
        .fold(f64::INFINITY, f64::min);
    let end = spans
        .iter()
        .map(|(t, s)| seconds((t, s.1)))
        .fold(0.0, f64::max);
    if start.is_finite() {
        layout.duration = (end - start).max(0.0);
    }
    Ok(layout)
}

/// The box at `pos`: its type, header length and total size, if it lies wholly within `len`.
fn box_at<R: Read + Seek>(
    reader: &mut R,
    pos: u64,
    len: u64,
) -> io::Result<Option<([u8; 4], u64, u64)>> {
    if pos + 8 > len {
        return Ok(None);
    }
    reader.seek(SeekFrom::Start(pos))?;
    let mut head = [0u8; 8];
    reader.read_exact(&mut head)?;
    let kind = [head[4], head[5], head[6], head[7]];
    let (header, size) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        0 => (8, len - pos),
        1 => {
            if pos + 16 > len {
                return Ok(None);
            }
            let mut large = [0u8; 8];
            reader.read_exact(&mut large)?;
            (16, u64::from_be_bytes(large))
        }
        n => (8, u64::from(n)),
    };
    if size < header || pos.checked_add(size).is_none_or(|end| end > len) {
        return Ok(None);
    }
    Ok(Some((kind, header, size)))
}

fn read_body<R: Read + Seek>(reader: &mut R, at: u64, len: u64) -> io::Result<Vec<u8>> {
    reader.seek(SeekFrom::Start(at))?;
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// The child boxes of a container body: (type, body).
fn children(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().ok()?;
        if size < 8 || size > rest.len() {
            return None;
        }
        let body = &rest[8..size];
        rest = &rest[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

/// Reads big-endian fields from a full box body.
struct Fields<'a> {
    data: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn u32(&mut self) -> Option<u32> {
        let v = self.data.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        let v = self.data.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    fn skip(&mut self, n: usize) {
        self.at += n;
    }
}

fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data, at: 0 }
}

/// Track id to media timescale, from `moov`.
fn track_timescales(moov: &[u8]) -> HashMap<u32, u32> {
    children(moov)
        .filter(|(k, _)| k == b"trak")
        .filter_map(|(_, trak)| {
            let mut tkhd = fields(child(trak, b"tkhd")?);
            let version = tkhd.u32()? >> 24;
            tkhd.skip(if version == 1 { 16 } else { 8 });
            let track = tkhd.u32()?;
            let mut mdhd = fields(child(child(trak, b"mdia")?, b"mdhd")?);
            let version = mdhd.u32()? >> 24;
            mdhd.skip(if version == 1 { 16 } else { 8 });
            Some((track, mdhd.u32()?))
        })
        .collect()
}

/// (track id, base decode time, summed sample durations) of each `traf` in a `moof`.
fn fragment_runs(moof: &[u8]) -> Vec<(u32, u64, u64)> {
    children(moof)
        .filter(|(k, _)| k == b"traf")
        .filter_map(|(_, traf)| {
            let mut tfhd = fields(child(traf, b"tfhd")?);
            let flags = tfhd.u32()? & 0x00ff_ffff;
            let track = tfhd.u32()?;
            if flags & TFHD_BASE_DATA_OFFSET != 0 {
                tfhd.skip(8);
            }
            if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
                tfhd.skip(4);
            }
            let default_duration = if flags & TFHD_DEFAULT_SAMPLE_DURATION != 0 {
                tfhd.u32()?
            } else {
                0
            };
            let mut tfdt = fields(child(traf, b"tfdt")?);
            let base = if tfdt.u32()? >> 24 == 1 {
                tfdt.u64()?
            } else {
                u64::from(tfdt.u32()?)
            };
            let mut total = 0u64;
            for (_, trun) in children(traf).filter(|(k, _)| k == b"trun") {
                let mut trun = fields(trun);
                let flags = trun.u32()? & 0x00ff_ffff;
                let count = trun.u32()?;
                if flags & TRUN_DATA_OFFSET != 0 {
                    trun.skip(4);
                }
                if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
                    trun.skip(4);
                }
                for _ in 0..count {
                    total += u64::from(if flags & TRUN_SAMPLE_DURATION != 0 {
                        trun.u32()?
                    } else {
                        default_duration
                    });
                    for flag in [TRUN_SAMPLE_SIZE, TRUN_SAMPLE_FLAGS, TRUN_SAMPLE_CTS] {
                        if flags & flag != 0 {
                            trun.skip(4);
                        }
                    }
                }
            }
            Some((track, base, total))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segmenter::tests::stream;
    use crate::recording::file::{FileWriter, Tracks};
    use crate::recording::fragmenter::{Cut, Fragmenter};
    use std::io::Cursor;

    /// Three 1 s fragments of 30 fps video and 48 kHz audio, as a file.
    fn file() -> (Vec<u8>, Vec<u64>) {
        let mut fragmenter = Fragmenter::default();
        let mut tracks = Tracks::default();
        for frame in stream(3.0, 30) {
            match &frame.track {
                crate::media::Track::Video(c) => tracks.video = Some(c.clone()),
                crate::media::Track::Audio(c) => tracks.audio = Some(c.clone()),
            }
            fragmenter.push(frame);
        }
        let mut writer = FileWriter::new(Vec::new());
        let mut ends = Vec::new();
        for cut in [Cut::Before(90_000), Cut::Before(180_000), Cut::All(None)] {
            let media = fragmenter.take(cut).unwrap();
            writer.write(&media, &tracks).unwrap();
            ends.push(writer.committed());
        }
        (writer.into_sink(), ends)
    }

    #[test]
    fn finds_fragments_and_duration() {
        let (bytes, ends) = file();
        let layout = scan(Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(layout.fragments, 3);
        assert_eq!(layout.complete, bytes.len() as u64);
        // Video ends at 3.0 s; the last AAC frame (140 frames of 1024 at 48 kHz) at 2.987 s.
        assert!((layout.duration - 3.0).abs() < 1e-9, "{}", layout.duration);
        assert_eq!(*ends.last().unwrap(), bytes.len() as u64);
    }

    #[test]
    fn a_file_cut_anywhere_ends_at_its_last_complete_fragment() {
        let (bytes, ends) = file();
        for cut in [ends[0] + 1, ends[1] - 1, ends[1] + 100, ends[2] - 8] {
            let layout = scan(Cursor::new(&bytes), cut).unwrap();
            let expected = *ends.iter().rfind(|&&e| e <= cut).unwrap();
            assert_eq!(layout.complete, expected, "cut at {cut}");
            assert_eq!(layout.fragments, ends.iter().filter(|&&e| e <= cut).count());
        }
        let layout = scan(Cursor::new(&bytes), ends[1]).unwrap();
        assert!((layout.duration - 2.0).abs() < 0.03, "{}", layout.duration);
        let empty = scan(Cursor::new(&bytes), 5).unwrap();
        assert_eq!(empty, Layout::default());
    }
}
