//! The protobuf codec of every generated service: prost's, with smaller
//! encode buffers.
//!
//! tonic's default reserves 8 KiB per call and gathers up to 32 KiB of a
//! stream's messages before yielding a frame. A daemon serving thousands of
//! idle log subscribers pays that per stream; 1 KiB that grows on demand
//! and a frame every 8 KiB keep an idle stream small while a busy one still
//! sends full frames (a large unary reply grows the buffer as it needs).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec as TonicCodec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode buffer of a call.
const ENCODE_BUFFER: usize = 1024;
/// Bytes of a stream's messages gathered before a frame is yielded.
const YIELD_THRESHOLD: usize = 4 * 1024;

/// prost encoding with the buffer sizes above.
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> TonicCodec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(ENCODE_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}
