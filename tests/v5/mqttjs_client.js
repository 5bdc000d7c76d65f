#!/usr/bin/env node
/*
 * One MQTT.js client (the npm package `mqtt`, 5.x) driven by a JSON plan, for tests/v5_mqttjs.rs. The same
 * idea as paho_client.py, with MQTT.js's own option and property names.
 *
 * Usage: node mqttjs_client.js PLAN_JSON
 *        node mqttjs_client.js --version      (prints the MQTT.js version; exit status 1 if it cannot load)
 *
 * MQTT.js is loaded from node_modules beside this script (`npm ci` in tests/v5 installs it there), never from
 * wherever else Node would look, so the version the tests run is the one package-lock.json pins.
 *
 * The plan:
 *   "url": "mqtt://127.0.0.1:PORT" or "ws://127.0.0.1:PORT/mqtt"
 *   "protocol_version": 5 (default) or 4 (MQTT 3.1.1)
 *   "client_id": "" (default: empty, for the server to assign one)
 *   "clean_start": true, "keepalive": 30
 *   "connect_properties": MQTT.js CONNECT properties ({"sessionExpiryInterval": 300, "topicAliasMaximum": 2})
 *   "options": more MQTT.js options as they are ({"autoUseTopicAlias": true, "autoAssignTopicAlias": true})
 *   "respond": {"prefix": "re:"} makes the client answer every message that carries a Response Topic: a QoS 1
 *              PUBLISH to that topic, payload prefix + the request's payload, the request's Correlation Data
 *   "errors_fatal": true (default): an MQTT.js "error" event ends the run as an error
 *   "deadline": 20 (seconds for the whole run)
 *   "steps": run in order once CONNACK has arrived (a refused CONNECT ends the run after its "connack")
 *
 * Everything the client sees is printed at once on stdout, one JSON object per line with an "event" key:
 *   "connack"    {reason_code, session_present, properties}
 *   "message"    {topic (as MQTT.js resolved it), raw_topic (as the PUBLISH carried it, "" under an alias),
 *                 payload (text, null if not UTF-8), payload_hex, qos, retain, dup, properties}
 *   "suback"     {reason_codes, properties}      "unsuback" {reason_codes, properties}
 *   "published"  {message_id, reason_code (PUBACK/PUBREC; 0 for QoS 0), sent_topic, sent_alias (the PUBLISH
 *                 as MQTT.js wrote it: topic "" and an alias when it used one)}
 *   "responded"  {topic, payload, correlation_data, reason_code}
 *   "disconnect" {reason_code, properties} (a DISCONNECT from the server)
 *   "close"      (the connection ended)
 *   "client_error" {message, code} (an MQTT.js "error" event when errors are not fatal)
 *   "ready", and finally "done" (the plan ran to its end; exit status 0) or "error" {message} (a step failed
 *   or timed out, or the deadline passed; exit status 1 or 2).
 * Properties are MQTT.js's, made JSON: binary values (Correlation Data) as {"hex": "..."}, User Properties as
 * a list of [name, value] pairs. MQTT.js hands User Properties over as an object of names (a repeated name's
 * values in an array, in order), so the pairs come grouped by name in the order each name first appeared;
 * pairs whose names interleave cannot be told apart from that. In a plan, Correlation Data (and any other
 * binary property) is given as {"hex": "..."} and User Properties as a list of [name, value] pairs (the test's
 * JSON objects do not keep the order of their keys), which become the object MQTT.js takes.
 *
 * Steps (each wait is bounded by "timeout", 5 s unless given):
 *   {"op": "subscribe", "filter": F, "qos": Q, "nl": B, "rap": B, "rh": 0|1|2,
 *    "subscription_identifier": N}                                -> waits for SUBACK
 *   {"op": "unsubscribe", "filter": F}                            -> waits for UNSUBACK
 *   {"op": "publish", "topic": T, "payload": S | "payload_hex": H, "qos": Q, "retain": B,
 *    "properties": {...}}                                          -> waits for PUBACK/PUBCOMP (or the write)
 *   {"op": "ready"}                                               -> prints {"event": "ready"}
 *   {"op": "wait_release"}                                        -> waits for the next line on stdin (or
 *                                                                    its end), written by the test
 *   {"op": "wait_messages", "count": N}                           -> until N messages arrived in all
 *   {"op": "wait_payload", "payload": S}                          -> until a message with this payload
 *   {"op": "wait_responded", "count": N}                          -> until N requests were answered
 *   {"op": "linger", "secs": S}                                   -> lets time pass (quiet windows only)
 *   {"op": "wait_disconnect"}                                     -> until the connection ends
 *   {"op": "expect_connected"}                                    -> fails if the connection has ended
 *   {"op": "disconnect", "reason_code": N, "properties": {...}}   -> sends DISCONNECT, waits for the close
 *   {"op": "drop"}                                                -> closes the socket without DISCONNECT
 */
'use strict';

const path = require('path');

const STEP_TIMEOUT = 5;

function loadMqtt() {
  const dir = path.join(__dirname, 'node_modules', 'mqtt');
  return { mqtt: require(dir), version: require(path.join(dir, 'package.json')).version };
}

function emit(event, fields = {}) {
  // Writes to a pipe are synchronous on Linux, so nothing is lost when the process exits right after.
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function jsonable(value) {
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') };
  if (Array.isArray(value)) return value.map(jsonable);
  return value;
}

function propsToJson(props) {
  const out = {};
  if (!props) return out;
  for (const [name, value] of Object.entries(props)) {
    if (name === 'userProperties') {
      const pairs = [];
      for (const [key, v] of Object.entries(value)) {
        for (const one of Array.isArray(v) ? v : [v]) pairs.push([key, String(one)]);
      }
      out[name] = pairs;
    } else {
      out[name] = jsonable(value);
    }
  }
  return out;
}

function propsFromJson(spec) {
  if (!spec) return undefined;
  const out = {};
  for (const [name, value] of Object.entries(spec)) {
    if (name === 'userProperties' && Array.isArray(value)) {
      // Pairs, in order, become the object MQTT.js takes; it writes each name's values together, the names
      // in the order they first appear.
      const object = {};
      for (const [key, v] of value) {
        if (!(key in object)) object[key] = v;
        else if (Array.isArray(object[key])) object[key].push(v);
        else object[key] = [object[key], v];
      }
      out[name] = object;
    } else if (value && typeof value === 'object' && !Array.isArray(value) && typeof value.hex === 'string') {
      out[name] = Buffer.from(value.hex, 'hex');
    } else {
      out[name] = value;
    }
  }
  return out;
}

function text(buffer) {
  const s = buffer.toString('utf8');
  return Buffer.from(s, 'utf8').equals(buffer) ? s : null;
}

class Runner {
  constructor(plan, mqtt) {
    this.plan = plan;
    this.mqtt = mqtt;
    this.waiters = new Set();
    this.connack = null;
    this.closed = false;
    this.messages = [];
    this.responded = 0;
    this.releases = 0;
    this.stdinEnded = false;
    this.stdinListening = false;
    this.lastSuback = null;
    this.lastUnsuback = null;
    this.ackReasons = new Map();
    this.sentPublishes = [];
    this.fatal = null;
  }

  notify() {
    for (const waiter of [...this.waiters]) waiter();
  }

  /* Resolves once `predicate` holds; rejects after `timeout` seconds, on a fatal error, or (unless
   * `evenIfClosed`) when the connection has ended first. */
  wait(what, predicate, timeout = STEP_TIMEOUT, evenIfClosed = false) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        let outcome = null;
        if (this.fatal) outcome = () => reject(this.fatal);
        else if (predicate()) outcome = resolve;
        else if (this.closed && !evenIfClosed) {
          outcome = () => reject(new Error(`the connection ended while waiting for ${what}`));
        }
        if (outcome) {
          this.waiters.delete(check);
          clearTimeout(timer);
          outcome();
        }
      };
      timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeout}s waiting for ${what}`));
      }, timeout * 1000);
      this.waiters.add(check);
      check();
    });
  }

  async run() {
    const plan = this.plan;
    const options = {
      protocolVersion: plan.protocol_version ?? 5,
      clientId: plan.client_id ?? '',
      clean: plan.clean_start ?? true,
      keepalive: plan.keepalive ?? 30,
      reconnectPeriod: 0,
      connectTimeout: STEP_TIMEOUT * 1000,
      resubscribe: false,
      properties: propsFromJson(plan.connect_properties),
      ...(plan.options || {}),
    };
    const client = this.mqtt.connect(plan.url, options);
    this.client = client;
    client.on('packetreceive', (packet) => this.onPacket(packet));
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'publish') this.sentPublishes.push(packet);
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('close', () => {
      if (!this.closed) emit('close');
      this.closed = true;
      this.notify();
    });
    client.on('error', (e) => {
      if (plan.errors_fatal ?? true) {
        this.fatal = new Error(`MQTT.js error: ${e.message} (code ${e.code})`);
      } else {
        emit('client_error', { message: e.message, code: e.code ?? null });
      }
      this.notify();
    });

    await this.wait('CONNACK', () => this.connack !== null);
    if (this.connack !== 0) return;
    for (const step of plan.steps || []) {
      const op = this['op_' + step.op];
      if (!op) throw new Error(`unknown step ${JSON.stringify(step)}`);
      await op.call(this, step);
    }
    if (this.fatal) throw this.fatal;
  }

  onPacket(packet) {
    switch (packet.cmd) {
      case 'connack': {
        const code = packet.reasonCode ?? packet.returnCode ?? 0;
        emit('connack', {
          reason_code: code,
          session_present: !!packet.sessionPresent,
          properties: propsToJson(packet.properties),
        });
        this.connack = code;
        break;
      }
      case 'suback':
        this.lastSuback = packet;
        break;
      case 'unsuback':
        this.lastUnsuback = packet;
        break;
      case 'puback':
      case 'pubrec':
        this.ackReasons.set(packet.messageId, packet.reasonCode ?? 0);
        break;
      case 'disconnect':
        emit('disconnect', {
          reason_code: packet.reasonCode ?? 0,
          properties: propsToJson(packet.properties),
        });
        break;
      default:
        break;
    }
    this.notify();
  }

  onMessage(topic, payload, packet) {
    emit('message', {
      topic,
      raw_topic: packet.topic.toString(),
      payload: text(payload),
      payload_hex: payload.toString('hex'),
      qos: packet.qos,
      retain: !!packet.retain,
      dup: !!packet.dup,
      properties: propsToJson(packet.properties),
    });
    this.messages.push(payload);
    const respond = this.plan.respond;
    const responseTopic = packet.properties && packet.properties.responseTopic;
    if (respond && responseTopic) {
      const properties = {};
      if (packet.properties.correlationData) {
        properties.correlationData = packet.properties.correlationData;
      }
      const answer = Buffer.concat([Buffer.from(respond.prefix ?? '', 'utf8'), payload]);
      this.client.publish(responseTopic, answer, { qos: 1, properties }, (err) => {
        emit('responded', {
          topic: responseTopic,
          payload: text(answer),
          correlation_data: jsonable(properties.correlationData ?? null),
          error: err ? err.message : null,
        });
        this.responded += 1;
        this.notify();
      });
    }
    this.notify();
  }

  // Steps.

  op_subscribe(step) {
    const opts = { qos: step.qos ?? 0 };
    for (const key of ['nl', 'rap', 'rh']) if (key in step) opts[key] = step[key];
    if ('subscription_identifier' in step) {
      opts.properties = { subscriptionIdentifier: step.subscription_identifier };
    }
    this.lastSuback = null;
    let finished = false;
    this.client.subscribe(step.filter, opts, () => {
      finished = true;
      this.notify();
    });
    return this.wait(`SUBACK for ${step.filter}`, () => finished && this.lastSuback, step.timeout).then(
      () => {
        emit('suback', {
          reason_codes: this.lastSuback.granted,
          properties: propsToJson(this.lastSuback.properties),
        });
      },
    );
  }

  op_unsubscribe(step) {
    this.lastUnsuback = null;
    let finished = false;
    this.client.unsubscribe(step.filter, () => {
      finished = true;
      this.notify();
    });
    return this.wait(`UNSUBACK for ${step.filter}`, () => finished && this.lastUnsuback, step.timeout).then(
      () => {
        emit('unsuback', {
          reason_codes: this.lastUnsuback.granted ?? [],
          properties: propsToJson(this.lastUnsuback.properties),
        });
      },
    );
  }

  async op_publish(step) {
    const payload =
      'payload_hex' in step ? Buffer.from(step.payload_hex, 'hex') : Buffer.from(step.payload ?? '', 'utf8');
    const qos = step.qos ?? 0;
    const opts = { qos, retain: !!step.retain };
    const properties = propsFromJson(step.properties);
    if (properties) opts.properties = properties;
    // MQTT.js writes the PUBLISH with the very Buffer it was given, topic and alias as they went out.
    const sentPacket = () => this.sentPublishes.find((p) => p.payload === payload);
    let outcome = null;
    this.client.publish(step.topic, payload, opts, (err) => {
      const sent = sentPacket();
      const reason = qos === 0 ? 0 : sent && this.ackReasons.get(sent.messageId);
      outcome = { err, sent, reason };
      this.notify();
    });
    await this.wait(`the end of the PUBLISH to ${JSON.stringify(step.topic)}`, () => outcome !== null, step.timeout);
    const { err, sent, reason } = outcome;
    if (!sent) throw new Error(`MQTT.js wrote no PUBLISH for ${JSON.stringify(step)}: ${err}`);
    this.sentPublishes = this.sentPublishes.filter((p) => p !== sent);
    if (err && (reason === undefined || reason < 0x80)) {
      throw new Error(`publish failed: ${err.message}`);
    }
    emit('published', {
      message_id: sent.messageId ?? null,
      reason_code: reason ?? null,
      sent_topic: sent.topic.toString(),
      sent_alias: (sent.properties && sent.properties.topicAlias) ?? null,
    });
  }

  op_ready() {
    emit('ready');
  }

  op_wait_release(step) {
    if (!this.stdinListening) {
      this.stdinListening = true;
      process.stdin.setEncoding('utf8');
      process.stdin.on('data', (chunk) => {
        this.releases += (chunk.match(/\n/g) || []).length;
        this.notify();
      });
      process.stdin.on('end', () => {
        this.stdinEnded = true;
        this.notify();
      });
    }
    const wanted = (this.released = (this.released ?? 0) + 1);
    return this.wait('a release on stdin', () => this.releases >= wanted || this.stdinEnded, step.timeout ?? 15);
  }

  op_wait_messages(step) {
    return this.wait(`${step.count} message(s)`, () => this.messages.length >= step.count, step.timeout);
  }

  op_wait_payload(step) {
    const wanted = Buffer.from(step.payload, 'utf8');
    return this.wait(`a message with payload ${JSON.stringify(step.payload)}`,
      () => this.messages.some((m) => m.equals(wanted)), step.timeout);
  }

  op_wait_responded(step) {
    return this.wait(`${step.count} answered request(s)`, () => this.responded >= step.count, step.timeout);
  }

  op_linger(step) {
    return new Promise((resolve) => setTimeout(resolve, step.secs * 1000));
  }

  op_wait_disconnect(step) {
    return this.wait('the end of the connection', () => this.closed, step.timeout, true);
  }

  op_expect_connected() {
    if (this.closed) throw new Error('the connection has ended');
  }

  op_disconnect(step) {
    const opts = {};
    if ('reason_code' in step) opts.reasonCode = step.reason_code;
    const properties = propsFromJson(step.properties);
    if (properties) opts.properties = properties;
    this.client.end(false, opts);
    return this.wait('the close after DISCONNECT', () => this.closed, step.timeout, true);
  }

  op_drop(step) {
    this.client.end(true);
    return this.wait('the close after dropping the connection', () => this.closed, step.timeout, true);
  }
}

async function main() {
  let loaded;
  try {
    loaded = loadMqtt();
  } catch (e) {
    if (process.argv[2] === '--version') {
      process.stderr.write(`MQTT.js cannot be loaded from ${__dirname}/node_modules: ${e.message}\n`);
      process.exit(1);
    }
    emit('error', { message: `MQTT.js cannot be loaded: ${e.message}` });
    process.exit(1);
  }
  if (process.argv[2] === '--version') {
    process.stdout.write(loaded.version + '\n');
    process.exit(0);
  }
  const plan = JSON.parse(process.argv[2]);
  const deadline = plan.deadline ?? 20;
  // A hard bound on the whole run, whatever the client is doing.
  setTimeout(() => {
    emit('error', { message: `deadline of ${deadline}s` });
    process.exit(2);
  }, deadline * 1000).unref();
  const runner = new Runner(plan, loaded.mqtt);
  try {
    await runner.run();
  } catch (e) {
    emit('error', { message: e.message });
    process.exit(1);
  }
  emit('done');
  if (runner.client && !runner.closed) runner.client.end(true);
  process.exit(0);
}

main();
