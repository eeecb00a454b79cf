//! Node and connection ids.

use std::fmt;
use std::str::FromStr;

/// The id of one server process, random at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn random() -> NodeId {
        NodeId(fastrand::u32(..))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<NodeId, ParseIdError> {
        if s.len() != 8 {
            return Err(ParseIdError);
        }
        u32::from_str_radix(s, 16)
            .map(NodeId)
            .map_err(|_| ParseIdError)
    }
}

/// A connection id, unique across nodes: the node's id and a per-node sequence number.
/// Written `"<node>-<seq>"`, e.g. `"1f2e3d4c-42"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub node: NodeId,
    pub seq: u64,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.seq)
    }
}

/// A string that is not a node or connection id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct ParseIdError;

impl FromStr for ConnId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<ConnId, ParseIdError> {
        let (node, seq) = s.split_once('-').ok_or(ParseIdError)?;
        Ok(ConnId {
            node: node.parse()?,
            seq: seq.parse().map_err(|_| ParseIdError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_ids_round_trip_through_text() {
        let id = ConnId {
            node: NodeId(0x1f2e3d4c),
            seq: 42,
        };
        assert_eq!(id.to_string(), "1f2e3d4c-42");
        assert_eq!("1f2e3d4c-42".parse::<ConnId>(), Ok(id));
        assert!("1f2e3d4c".parse::<ConnId>().is_err());
        assert!("zz-1".parse::<ConnId>().is_err());
    }
}
