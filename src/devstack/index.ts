export { APICURIO_VERSION, KAFKA_VERSION, kafkaClasspath } from './artifacts.js';
export { DevStackError } from './errors.js';
export {
  restartStackProcess,
  type StackInfo,
  type StackOptions,
  type StackProcess,
  stackDown,
  stackHome,
  stackStatus,
  stackUp,
  stopStackProcess,
} from './stack.js';
