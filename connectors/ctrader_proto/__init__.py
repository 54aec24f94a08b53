"""brokerstream's own subset of the cTrader Open API messages (`openapi_subset.proto`) and the
module protoc generated from it (`openapi_subset_pb2`); `regenerate.sh` rebuilds the module."""
