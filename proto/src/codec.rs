//! The codec of every generated client and server: prost's, except that a
//! message that does not decode (invalid UTF-8 in a string, truncated
//! bytes) is the sender's fault, INVALID_ARGUMENT naming the field prost
//! names, not INTERNAL. (Our own clients only ever receive what our servers
//! encoded, so the code matters on the server side.)

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstEncoder};

#[derive(Debug, Clone)]
pub struct StewardCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StewardCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for StewardCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StewardDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StewardDecoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct StewardDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for StewardDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!("the request message does not decode: {e}"))
        })
    }
}
