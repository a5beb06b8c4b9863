//! Activations as bytes: how a hidden state crosses a stage boundary (or the network).
//!
//! Layout, all little-endian: `u8` dtype (0 = f32), `u8` rank, `u16` reserved (0), then
//! `rank` × `u32` dims, then the elements row-major. Raw bytes, lossless, no JSON.

use burn::tensor::{Device, Tensor, TensorData};

use super::error::ForwardError;

const DTYPE_F32: u8 = 0;
/// Upper bound on elements in one activation, checked before allocating.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Encodes host f32 data of `shape`.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * shape.len() + 4 * data.len());
    out.push(DTYPE_F32);
    out.push(shape.len() as u8);
    out.extend_from_slice(&[0, 0]);
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes bytes into shape and f32 data, validating every length before allocating.
pub fn decode_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), ForwardError> {
    let bad = |m: String| ForwardError::InvalidActivation(m);
    let [dtype, rank, r0, r1] = *bytes.first_chunk::<4>().ok_or_else(|| bad("shorter than its header".into()))?;
    if dtype != DTYPE_F32 || r0 != 0 || r1 != 0 {
        return Err(bad(format!("unknown dtype {dtype} or flags")));
    }
    let rank = rank as usize;
    if rank == 0 || rank > 8 {
        return Err(bad(format!("rank {rank} out of range 1..=8")));
    }
    let dims_end = 4 + 4 * rank;
    let dims = bytes.get(4..dims_end).ok_or_else(|| bad("truncated dims".into()))?;
    let shape: Vec<usize> =
        dims.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let payload = &bytes[dims_end..];
    if payload.len() != n * 4 {
        return Err(bad(format!("shape {shape:?} needs {} bytes, got {}", n * 4, payload.len())));
    }
    let data = payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, data))
}

/// Reads a tensor back to the host as shape and f32 data.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), ForwardError> {
    let shape = t.dims().to_vec();
    let data = t.into_data().try_into_vec::<f32>().map_err(|e| ForwardError::Backend(format!("{e:?}")))?;
    Ok((shape, data))
}

/// Encodes a tensor.
pub fn encode<const D: usize>(t: Tensor<D>) -> Result<Vec<u8>, ForwardError> {
    let (shape, data) = to_host(t)?;
    Ok(encode_f32(&shape, &data))
}

/// Decodes bytes into a tensor of rank `D` on `device`.
pub fn decode<const D: usize>(bytes: &[u8], device: &Device) -> Result<Tensor<D>, ForwardError> {
    let (shape, data) = decode_f32(bytes)?;
    let shape: [usize; D] = shape
        .try_into()
        .map_err(|s: Vec<usize>| ForwardError::InvalidActivation(format!("expected rank {D}, got shape {s:?}")))?;
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let data: Vec<f32> = (0..24).map(|i| (i as f32).sin() * 1e-3 + f32::EPSILON).collect();
        let bytes = encode_f32(&[2, 3, 4], &data);
        let (shape, back) = decode_f32(&bytes).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            data.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn hostile_headers_are_rejected_without_allocating() {
        let mut b = encode_f32(&[1, 2], &[1.0, 2.0]);
        b.truncate(b.len() - 1);
        assert!(decode_f32(&b).is_err());
        // Claims 2^32-1 x 2^32-1 elements in a 12-byte message.
        let huge = [0u8, 2, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(decode_f32(&huge).unwrap_err().to_string().contains("too large"));
        assert!(decode_f32(&[]).is_err());
        assert!(decode_f32(&[0, 9, 0, 0]).is_err());
    }
}
