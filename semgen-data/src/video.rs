//! A clip of sRGB `u8` frames, and its conversions to and from model tensors.
//!
//! In memory a [`Video`] is `[T, H, W, 3]` bytes (what decoders and encoders speak); models see
//! `[B, 3, T, H, W]` `f32` in `[-1, 1]` (`x = p / 127.5 - 1`).

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::error::{DataError, Result};

/// A clip of `frames` RGB frames of `height × width` pixels, `[T, H, W, 3]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    frames: usize,
    height: usize,
    width: usize,
    data: Vec<u8>,
}

impl Video {
    /// Wraps `[T, H, W, 3]` bytes; fails if the length does not match or a size is zero.
    pub fn new(frames: usize, height: usize, width: usize, data: Vec<u8>) -> Result<Self> {
        if frames == 0 || height == 0 || width == 0 {
            return Err(DataError::InvalidVideo(format!(
                "empty video ({frames} frames of {height}x{width})"
            )));
        }
        let expected = frames * height * width * 3;
        if data.len() != expected {
            return Err(DataError::InvalidVideo(format!(
                "{} bytes for {frames} frames of {height}x{width} RGB (expected {expected})",
                data.len()
            )));
        }
        Ok(Self {
            frames,
            height,
            width,
            data,
        })
    }

    /// Builds a video from equally sized `[H, W, 3]` frames.
    pub fn from_frames(height: usize, width: usize, frames: Vec<Vec<u8>>) -> Result<Self> {
        let t = frames.len();
        Self::new(t, height, width, frames.concat())
    }

    /// Number of frames `T`.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame height `H`.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Frame width `W`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// All bytes, `[T, H, W, 3]`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the video, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    fn frame_len(&self) -> usize {
        self.height * self.width * 3
    }

    /// Frame `t` as `[H, W, 3]` bytes, or `None` past the end.
    pub fn frame(&self, t: usize) -> Option<&[u8]> {
        (t < self.frames).then(|| &self.data[t * self.frame_len()..(t + 1) * self.frame_len()])
    }

    /// Iterates over frames as `[H, W, 3]` byte slices.
    pub fn frame_iter(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks_exact(self.frame_len())
    }

    /// Pixel `(t, y, x)`; `None` out of bounds.
    pub fn pixel(&self, t: usize, y: usize, x: usize) -> Option<[u8; 3]> {
        if t >= self.frames || y >= self.height || x >= self.width {
            return None;
        }
        let i = ((t * self.height + y) * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// A new video made of the given frames (indices may repeat); fails on an index past the end.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let mut data = Vec::with_capacity(indices.len() * self.frame_len());
        for &t in indices {
            let frame = self.frame(t).ok_or_else(|| {
                DataError::InvalidVideo(format!("frame {t} of a {}-frame video", self.frames))
            })?;
            data.extend_from_slice(frame);
        }
        Self::new(indices.len(), self.height, self.width, data)
    }

    /// Frames `start..=end` (a segment of a story shares its boundary frames with its neighbours).
    pub fn segment(&self, start: usize, end: usize) -> Result<Self> {
        let indices: Vec<usize> = (start..=end).collect();
        self.select(&indices)
    }

    /// The sparser sampling the semantic encoder sees: frames `0, stride, 2·stride, …`.
    pub fn strided(&self, stride: usize) -> Result<Self> {
        if stride == 0 {
            return Err(DataError::Config(
                "semantic stride must be at least 1".into(),
            ));
        }
        let indices: Vec<usize> = (0..self.frames).step_by(stride).collect();
        self.select(&indices)
    }

    /// The clip as `[3, T, H, W]` `f32` in `[-1, 1]`, appended to `out`.
    pub fn write_cthw(&self, out: &mut Vec<f32>) {
        let plane = self.frames * self.height * self.width;
        out.reserve(3 * plane);
        for c in 0..3 {
            out.extend(
                self.data[c..]
                    .iter()
                    .step_by(3)
                    .map(|&p| p as f32 / 127.5 - 1.0),
            );
        }
    }

    /// Builds a video from `[3, T, H, W]` values in `[-1, 1]` (clamped, rounded to nearest).
    pub fn from_cthw(frames: usize, height: usize, width: usize, values: &[f32]) -> Result<Self> {
        let plane = frames * height * width;
        if values.len() != 3 * plane {
            return Err(DataError::InvalidVideo(format!(
                "{} values for [3, {frames}, {height}, {width}]",
                values.len()
            )));
        }
        let mut data = vec![0u8; 3 * plane];
        for c in 0..3 {
            for (i, &v) in values[c * plane..(c + 1) * plane].iter().enumerate() {
                // NaN maps to 0 through `as`, which saturates: bad model output never panics.
                data[i * 3 + c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            }
        }
        Self::new(frames, height, width, data)
    }

    /// Resizes to cover `height × width` (preserving aspect ratio) and centre-crops, sampling
    /// bilinearly at the output pixel centres.
    pub fn resize_crop(&self, height: usize, width: usize) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(DataError::Config(format!("resize to {height}x{width}")));
        }
        if height == self.height && width == self.width {
            return Ok(self.clone());
        }
        let scale = (height as f64 / self.height as f64).max(width as f64 / self.width as f64);
        // Source coordinates of output pixel centres: the crop is centred in the scaled frame.
        let off_y = (self.height as f64 * scale - height as f64) / 2.0;
        let off_x = (self.width as f64 * scale - width as f64) / 2.0;
        let src = |o: usize, off: f64, n: usize| {
            let s = ((o as f64 + 0.5 + off) / scale - 0.5).clamp(0.0, (n - 1) as f64);
            let i0 = s.floor() as usize;
            (i0, (i0 + 1).min(n - 1), s - i0 as f64)
        };
        let ys: Vec<_> = (0..height).map(|y| src(y, off_y, self.height)).collect();
        let xs: Vec<_> = (0..width).map(|x| src(x, off_x, self.width)).collect();
        let mut data = Vec::with_capacity(self.frames * height * width * 3);
        for frame in self.frame_iter() {
            let at = |y: usize, x: usize, c: usize| frame[(y * self.width + x) * 3 + c] as f64;
            for &(y0, y1, fy) in &ys {
                for &(x0, x1, fx) in &xs {
                    for c in 0..3 {
                        let top = at(y0, x0, c) * (1.0 - fx) + at(y0, x1, c) * fx;
                        let bottom = at(y1, x0, c) * (1.0 - fx) + at(y1, x1, c) * fx;
                        data.push((top * (1.0 - fy) + bottom * fy).round() as u8);
                    }
                }
            }
        }
        Self::new(self.frames, height, width, data)
    }
}

/// Stacks equally shaped clips into a `[B, 3, T, H, W]` tensor in `[-1, 1]`.
pub fn videos_to_tensor<B: Backend>(videos: &[Video], device: &B::Device) -> Result<Tensor<B, 5>> {
    let first = videos
        .first()
        .ok_or_else(|| DataError::InvalidVideo("no videos to stack".into()))?;
    let (t, h, w) = (first.frames, first.height, first.width);
    let mut values = Vec::with_capacity(videos.len() * 3 * t * h * w);
    for video in videos {
        if (video.frames, video.height, video.width) != (t, h, w) {
            return Err(DataError::InvalidVideo(format!(
                "cannot stack a {}x{}x{} clip with {t}x{h}x{w} clips",
                video.frames, video.height, video.width
            )));
        }
        video.write_cthw(&mut values);
    }
    let data = TensorData::new(values, [videos.len(), 3, t, h, w]);
    Ok(Tensor::from_data(data, device))
}

/// Splits a `[B, 3, T, H, W]` tensor in `[-1, 1]` back into clips.
pub fn tensor_to_videos<B: Backend>(tensor: Tensor<B, 5>) -> Result<Vec<Video>> {
    let [b, c, t, h, w] = tensor.dims();
    if c != 3 {
        return Err(DataError::InvalidVideo(format!("{c} channels, expected 3")));
    }
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| DataError::InvalidVideo(format!("tensor data: {e:?}")))?;
    let clip = 3 * t * h * w;
    (0..b)
        .map(|i| Video::from_cthw(t, h, w, &values[i * clip..(i + 1) * clip]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(t: usize, h: usize, w: usize) -> Video {
        let data = (0..t * h * w * 3).map(|i| (i * 7 % 256) as u8).collect();
        Video::new(t, h, w, data).unwrap()
    }

    #[test]
    fn cthw_round_trips_exactly() {
        let v = ramp(3, 4, 5);
        let mut values = Vec::new();
        v.write_cthw(&mut values);
        assert!(values.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert_eq!(Video::from_cthw(3, 4, 5, &values).unwrap(), v);
    }

    #[test]
    fn bad_lengths_and_indices_are_errors() {
        assert!(Video::new(2, 2, 2, vec![0; 5]).is_err());
        assert!(Video::new(0, 2, 2, vec![]).is_err());
        assert!(ramp(2, 2, 2).select(&[2]).is_err());
        assert!(ramp(2, 2, 2).strided(0).is_err());
    }

    #[test]
    fn strided_keeps_every_nth_frame() {
        let v = ramp(9, 2, 2);
        let s = v.strided(4).unwrap();
        assert_eq!(s.frames(), 3);
        assert_eq!(s.frame(2), v.frame(8));
    }

    #[test]
    fn resize_crop_keeps_a_flat_colour_and_the_centre() {
        let v = Video::new(1, 4, 8, [10u8, 20, 30].repeat(32)).unwrap();
        let r = v.resize_crop(6, 6).unwrap();
        assert_eq!((r.height(), r.width()), (6, 6));
        assert!(r.as_bytes().chunks(3).all(|p| p == [10, 20, 30]));
    }
}
