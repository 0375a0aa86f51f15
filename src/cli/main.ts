#!/usr/bin/env node
import { handleCommanderExit } from './common.js';
import { buildProgram } from './program.js';

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  handleCommanderExit(error);
}
