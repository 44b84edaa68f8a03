"""Scale-out on Redis: gateways hand decode work to speech workers through Redis Streams.

* :mod:`.config` names every stream and key and holds the TTLs and bounds;
* :mod:`.codec` is the one wire format (msgpack, versioned) of everything that crosses Redis;
* :mod:`.redisio` is the client, what a lost Redis raises, backoff and typed replies;
* :mod:`.audio` decides which samples of a request Redis already holds (gateway side) and
  which a worker must fetch (no I/O);
* :mod:`.engine` is :class:`RedisEngine`, the gateway's
  :class:`~webrtc_stt.decoding.protocol.Engine`;
* :mod:`.worker` reads jobs from the consumer group and decodes them on a ``LocalEngine``;
* :mod:`.registry` is the heartbeat + TTL registry and the pure admission rule;
* :mod:`.sessions` mirrors sessions' event logs into Redis and reads them back (resume);
* :mod:`.hub` is the gateway's session hub: cluster admission and the event mirror.

The network line between :mod:`webrtc_stt.streaming` and :mod:`webrtc_stt.engine`: the
gateway runs the transcriber, commit policy and filters (``streaming/``) with a
:class:`~webrtc_stt.cluster.engine.RedisEngine`; the worker runs the engine side
(``engine/local.py``, ``engine/backend.py``, ``engine/models.py``); ``decoding/`` (the
``Engine`` protocol, requests and results) is what both sides share, and requests and results
cross the line in :mod:`.codec`'s encoding. Nothing on the gateway imports
:mod:`webrtc_stt.engine` or the model (``tests/test_cluster_engine.py`` checks).
"""
