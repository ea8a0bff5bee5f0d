"""The only place that knows Faust's and aiokafka's internals: the transport and its
consumer fixes, topics and their creation, the embedded broker, bulk changelog loading."""
