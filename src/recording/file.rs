//! One recording file as it is written: the init segment with the first fragment, then one
//! `moof`+`mdat` per fragment, each handed to the OS in one `write_all` and made durable with
//! `sync_data` before the next. The file is a valid fragmented MP4 after every fragment, so a
//! crash or power cut loses at most the fragment being gathered, and a player can open the file
//! while it grows.
//!
//! A failed write (disk full, I/O error) cuts the file back to the end of the last complete
//! fragment, so what was written stays playable, and the error goes to the caller, which stops.
//!
//! Decode times are rebased so each file starts at zero: a recording started an hour into an
//! event is a file that starts at 0:00, which is what editors expect.

use std::{
    io::{self, Seek, Write},
    sync::Arc,
};

use super::fragmenter::FragmentMedia;
use crate::fmp4::{self, Fmp4Error, Run};
use crate::media::{AudioConfig, VideoConfig, VIDEO_TIMESCALE};

/// Where a file's bytes go: a [`std::fs::File`] in production, a `Vec` or a failing sink in tests.
pub trait Sink {
    /// Writes all of `bytes` at the end of what was written.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes after a failed write; later writes go after it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Sink for std::fs::File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        self.seek(io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl Sink for Vec<u8> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Vec::truncate(self, len as usize);
        Ok(())
    }
}

/// Why a fragment was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The sink failed: the file ends after its last complete fragment, and recording stops.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The fragment could not be encoded (a configuration MP4 cannot carry): it is skipped.
    #[error("encoding the fragment: {0}")]
    Encode(#[from] Fmp4Error),
}

/// The configurations of a file's tracks, fixed by its init segment.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    /// The video track's configuration, if the file has video.
    pub video: Option<Arc<VideoConfig>>,
    /// The audio track's configuration, if the file has audio.
    pub audio: Option<Arc<AudioConfig>>,
}

/// Writes one file's init segment and fragments.
#[derive(Debug)]
pub struct FileWriter<S> {
    /// Where the bytes go.
    sink: S,
    /// Bytes through the last complete fragment: what survives a failed write.
    committed: u64,
    /// `mfhd` sequence number of the next fragment (1, 2, ...).
    sequence: u32,
    /// The tracks of the init segment; `None` until the first fragment is written with it.
    tracks: Option<Tracks>,
    /// Subtracted from decode times so the file starts at zero: (video in 90 kHz ticks, audio in
    /// its sample rate), from the first fragment.
    origin: Option<(i64, i64)>,
    /// End of the last fragment written (90 kHz, source timeline).
    end: i64,
    /// The fragment's bytes gathered into one buffer (reused), so each fragment is one write.
    buffer: Vec<u8>,
}

impl<S: Sink> FileWriter<S> {
    pub fn new(sink: S) -> Self {
        FileWriter {
            sink,
            committed: 0,
            sequence: 1,
            tracks: None,
            origin: None,
            end: 0,
            buffer: Vec::new(),
        }
    }

    /// Bytes on disk through the last complete fragment.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Seconds of media written.
    pub fn duration(&self) -> f64 {
        let Some((origin, _)) = self.origin else {
            return 0.0;
        };
        (self.end - origin).max(0) as f64 / f64::from(VIDEO_TIMESCALE)
    }

    /// The init segment's tracks, once written.
    pub fn tracks(&self) -> Option<&Tracks> {
        self.tracks.as_ref()
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Writes one fragment (preceded, the first time, by the init segment for `tracks`); returns
    /// the bytes written. A run whose track the init lacks is left out (the caller starts a new
    /// file before that can happen).
    pub fn write(&mut self, media: &FragmentMedia, tracks: &Tracks) -> Result<u64, WriteError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let first = self.tracks.is_none();
        let tracks = match &self.tracks {
            Some(tracks) => tracks.clone(),
            None => {
                let init = fmp4::init_segment(tracks.video.as_deref(), tracks.audio.as_deref())?;
                buffer.extend_from_slice(&init);
                tracks.clone()
            }
        };
        let origin = self.origin.unwrap_or_else(|| origin_of(media));
        let video = media
            .video
            .as_ref()
            .filter(|_| tracks.video.is_some())
            .map(|v| (v.base_dts - origin.0, &v.samples));
        let audio = media
            .audio
            .as_ref()
            .filter(|_| tracks.audio.is_some())
            .map(|a| (a.base_dts - origin.1, &a.samples));
        let fragment = fmp4::fragment(
            self.sequence,
            video.map(|(base, samples)| Run {
                base_dts: base.max(0) as u64,
                samples,
            }),
            audio.map(|(base, samples)| Run {
                base_dts: base.max(0) as u64,
                samples,
            }),
        )?;
        for chunk in fragment.chunks() {
            buffer.extend_from_slice(chunk);
        }
        let written = self.sink.write_all(&buffer).and_then(|()| self.sink.sync());
        let len = buffer.len() as u64;
        self.buffer = buffer;
        if let Err(e) = written {
            // Best effort: on a full disk, shortening the file is what frees the space.
            if let Err(cut) = self.sink.truncate(self.committed) {
                tracing::warn!(error = %cut, "cutting the file back to its last fragment failed");
            }
            return Err(WriteError::Io(e));
        }
        if first {
            self.tracks = Some(tracks);
            self.origin = Some(origin);
        }
        self.committed += len;
        self.sequence = self.sequence.wrapping_add(1);
        self.end = self.end.max(media.end);
        Ok(len)
    }
}

fn audio_time(dts: i64, audio: &crate::hls::segmenter::TrackMedia<AudioConfig>) -> i64 {
    crate::media::rescale(dts, audio.config.sample_rate, VIDEO_TIMESCALE)
}

/// The origin of a file whose first fragment is `media`: the earliest sample of either track,
/// so that no rebased decode time is negative (`tfdt` is unsigned).
fn origin_of(media: &FragmentMedia) -> (i64, i64) {
    let video = media.video.as_ref().map(|v| v.base_dts);
    let audio = media.audio.as_ref().map(|a| audio_time(a.base_dts, a));
    let origin = video.into_iter().chain(audio).min().unwrap_or(media.start);
    let audio_origin = media.audio.as_ref().map_or(0, |a| {
        // Rounded down in the audio clock, and never past the first audio frame.
        let rate = i128::from(a.config.sample_rate);
        let floor = (i128::from(origin) * rate).div_euclid(i128::from(VIDEO_TIMESCALE)) as i64;
        floor.min(a.base_dts)
    });
    (origin, audio_origin)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hls::segmenter::tests::stream;
    use crate::recording::fragmenter::{Cut, Fragmenter};

    /// Fails every write from the `fail_at`th on (counting from 1), like a disk that fills up;
    /// the bytes of a failed write are partly written, as a short write would leave them.
    #[derive(Debug, Default)]
    pub struct FailingSink {
        /// What was written (and not cut back).
        pub bytes: Vec<u8>,
        /// Writes attempted so far.
        pub writes: u32,
        /// The write (from 1) from which every write fails.
        pub fail_at: u32,
    }

    impl Sink for FailingSink {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.writes += 1;
            if self.writes >= self.fail_at {
                self.bytes.extend_from_slice(&bytes[..bytes.len() / 2]);
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            self.bytes.extend_from_slice(bytes);
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.bytes.truncate(len as usize);
            Ok(())
        }
    }

    /// Three seconds of 30 fps video with 48 kHz audio, starting an hour in, as 1 s fragments.
    fn fragments() -> (Tracks, Vec<FragmentMedia>) {
        let mut fragmenter = Fragmenter::default();
        let offset = 3600 * 90_000;
        let mut tracks = Tracks::default();
        for mut frame in stream(3.0, 30) {
            match &frame.track {
                crate::media::Track::Video(c) => {
                    tracks.video = Some(c.clone());
                    frame.dts += offset;
                }
                crate::media::Track::Audio(c) => {
                    tracks.audio = Some(c.clone());
                    frame.dts += 3600 * 48_000;
                }
            }
            fragmenter.push(frame);
        }
        let mut out = Vec::new();
        for second in 1..3 {
            out.extend(fragmenter.take(Cut::Before(offset + second * 90_000)));
        }
        out.extend(fragmenter.take(Cut::All(None)));
        (tracks, out)
    }

    fn read(bytes: &[u8]) -> mp4::Mp4Reader<std::io::Cursor<Vec<u8>>> {
        let size = bytes.len() as u64;
        mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes.to_vec()), size)
            .expect("the mp4 crate reads the file")
    }

    #[test]
    fn writes_init_then_one_fragment_per_write_rebased_to_zero() {
        let (tracks, fragments) = fragments();
        let mut writer = FileWriter::new(Vec::new());
        let mut total = 0;
        for fragment in &fragments {
            total += writer.write(fragment, &tracks).unwrap();
        }
        assert_eq!(writer.committed(), total);
        assert!(
            (writer.duration() - 3.0).abs() < 0.05,
            "{}",
            writer.duration()
        );
        let bytes = writer.into_sink();
        assert_eq!(bytes.len() as u64, total);
        let reader = read(&bytes);
        assert_eq!(reader.moov.traks.len(), 2);
        assert_eq!(reader.moofs.len(), 3);
        let sequences: Vec<u32> = reader
            .moofs
            .iter()
            .map(|m| m.mfhd.sequence_number)
            .collect();
        assert_eq!(sequences, vec![1, 2, 3]);
        let video_starts: Vec<u64> = reader
            .moofs
            .iter()
            .map(|m| m.trafs[0].tfdt.as_ref().unwrap().base_media_decode_time)
            .collect();
        assert_eq!(video_starts, vec![0, 90_000, 180_000]);
        let audio_start = reader.moofs[0].trafs[1]
            .tfdt
            .as_ref()
            .unwrap()
            .base_media_decode_time;
        assert_eq!(audio_start, 0);
    }

    #[test]
    fn a_failed_write_leaves_the_file_at_its_last_complete_fragment() {
        let (tracks, fragments) = fragments();
        let mut writer = FileWriter::new(FailingSink {
            fail_at: 3,
            ..Default::default()
        });
        writer.write(&fragments[0], &tracks).unwrap();
        writer.write(&fragments[1], &tracks).unwrap();
        let committed = writer.committed();
        let err = writer.write(&fragments[2], &tracks).unwrap_err();
        assert!(matches!(&err, WriteError::Io(e) if e.kind() == io::ErrorKind::StorageFull));
        assert_eq!(writer.committed(), committed);
        let bytes = writer.into_sink().bytes;
        assert_eq!(
            bytes.len() as u64,
            committed,
            "the partial fragment is cut off"
        );
        let reader = read(&bytes);
        assert_eq!(reader.moofs.len(), 2);
    }

    #[test]
    fn a_first_write_that_fails_leaves_an_empty_file() {
        let (tracks, fragments) = fragments();
        let mut writer = FileWriter::new(FailingSink {
            fail_at: 1,
            ..Default::default()
        });
        assert!(writer.write(&fragments[0], &tracks).is_err());
        assert_eq!(writer.committed(), 0);
        assert!(writer.tracks().is_none());
        assert!(writer.into_sink().bytes.is_empty());
    }
}
